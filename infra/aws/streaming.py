"""`Streaming`: a provisioned Amazon MSK cluster, TLS-only with SASL/IAM clients, reachable only from the cluster.

Clients authenticate with IAM only (port 9098); what a workload may do is the `grant_*` it is handed. The action
names and the topic/group ARN forms are MSK's "Semantics of IAM authorization policy actions and resources"
(docs.aws.amazon.com/msk/latest/developerguide/kafka-actions.html): every action needs `kafka-cluster:Connect` on
the cluster; WriteData and ReadData need DescribeTopic; ReadData needs AlterGroup, which needs DescribeGroup; topic
and group ARNs are `arn:aws:kafka:REGION:ACCOUNT:{topic,group}/CLUSTER_NAME/CLUSTER_UUID/NAME`, the cluster ARN
`arn:aws:kafka:REGION:ACCOUNT:cluster/CLUSTER_NAME/CLUSTER_UUID`. Broker logs go to a CloudWatch group encrypted
with the cluster's own key, whose policy lets CloudWatch Logs use it as infra/aws/logging.py's does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import pulumi
import pulumi_aws as aws

from infra.aws.iam import Grant, PolicyStatement
from infra.aws.logging import logs_kms_key
from infra.config.streaming import StreamingConfig

SASL_IAM_PORT: Final = 9098
"""The brokers' TLS + SASL/IAM listener inside the VPC (MSK "Port information"); the only client port open."""
OPEN_MONITORING_PORTS: Final = (11001, 11002)
"""Prometheus JMX exporter and node exporter on each broker (MSK open monitoring), opened with openMonitoring."""
CONNECT: Final = "kafka-cluster:Connect"
"""Connect and authenticate; every other kafka-cluster action needs it on the cluster."""
PRODUCE_CLUSTER_ACTIONS: Final = (CONNECT, "kafka-cluster:WriteDataIdempotently")
"""Cluster actions of a producer: our producers are idempotent (`enable.idempotence`, workloads/recommend)."""
PRODUCE_TOPIC_ACTIONS: Final = ("kafka-cluster:DescribeTopic", "kafka-cluster:WriteData")
"""Topic actions of a producer."""
CONSUME_TOPIC_ACTIONS: Final = ("kafka-cluster:DescribeTopic", "kafka-cluster:ReadData")
"""Topic actions of a consumer."""
CONSUME_GROUP_ACTIONS: Final = ("kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup")
"""Group actions of a consumer in a group (join, commit offsets)."""
MANAGE_CLUSTER_ACTIONS: Final = (CONNECT,)
"""Cluster actions of the topics Job's admin client: Connect only. Its Metadata requests (list_topics, which also
reads the broker count) need no other action (kafka-actions.html maps none to Metadata), so DescribeCluster (Kafka's
DESCRIBE CLUSTER ACL) is not granted."""
MANAGE_TOPIC_ACTIONS: Final = (
    "kafka-cluster:CreateTopic", "kafka-cluster:DescribeTopic", "kafka-cluster:AlterTopic",
    "kafka-cluster:DescribeTopicDynamicConfiguration", "kafka-cluster:AlterTopicDynamicConfiguration")
"""Topic actions of the topics Job: create, add partitions, read and set retention and min.insync.replicas; no
DeleteTopic."""


class Streaming(pulumi.ComponentResource):
    """MSK brokers across the private subnets: TLS in transit, a KMS key of their own at rest, IAM clients only."""

    bootstrap_brokers: pulumi.Output[str]
    """HOST:9098 pairs of the SASL/IAM listener, comma-separated."""
    cluster_arn: pulumi.Output[str]
    """The MSK cluster's ARN."""
    cluster_name: pulumi.Output[str]
    """The MSK cluster's name."""
    security_group_id: pulumi.Output[str]
    """The brokers' security group."""

    def __init__(self, name: str, config: StreamingConfig, *, vpc_id: pulumi.Input[str],
                 subnet_ids: Sequence[pulumi.Input[str]], allowed_security_group_ids: Sequence[pulumi.Input[str]],
                 protect: bool, opts: pulumi.ResourceOptions | None = None) -> None:
        """Brokers go to the first `config.zones` of `subnet_ids` in `vpc_id` and admit 9098 (and the exporters with
        openMonitoring) from `allowed_security_group_ids`; `protect` sets Pulumi `protect` on the cluster."""
        super().__init__("modelplane:streaming:Streaming", name, None, opts)
        if len(subnet_ids) < config.zones:
            raise ValueError(f"streaming.zones is {config.zones} but only {len(subnet_ids)} subnets were given")
        child = pulumi.ResourceOptions(parent=self)
        physical = f"modelplane-{pulumi.get_stack()}-{name}"
        log_group_name = f"/aws/msk/{physical}"
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        key = logs_kms_key(f"{name}-kms", description=f"modelplane MSK {physical} at rest and its broker logs",
                           log_group_pattern=log_group_name, region=region,
                           deletion_window_days=config.kms_deletion_window_days, opts=child)
        # A readable name in the console and in CloudTrail, like the other log keys' aliases.
        aws.kms.Alias(f"{name}-kms", name=f"alias/{physical}-msk", target_key_id=key.key_id, opts=child)
        logs = aws.cloudwatch.LogGroup(f"{name}-broker-logs", name=log_group_name,
                                       retention_in_days=config.broker_log_retention_days, kms_key_id=key.arn,
                                       opts=child)
        sg = aws.ec2.SecurityGroup(f"{name}-sg", vpc_id=vpc_id, description="MSK SASL/IAM, only from the cluster",
                                   tags={"Name": f"{name}-msk"}, opts=child)
        self.security_group_id = sg.id
        ports = [(SASL_IAM_PORT, "Kafka SASL/IAM over TLS")]
        ports += [(port, "MSK Prometheus exporter") for port in OPEN_MONITORING_PORTS] if config.open_monitoring else []
        for i, source in enumerate(allowed_security_group_ids):
            for port, what in ports:
                aws.vpc.SecurityGroupIngressRule(
                    f"{name}-from-{i}-{port}", security_group_id=sg.id, referenced_security_group_id=source,
                    ip_protocol="tcp", from_port=port, to_port=port, description=f"{what} from the EKS cluster",
                    opts=child)
        replication = min(3, config.brokers)
        # No fixed name: a Kafka version bump replaces the configuration (kafka_versions forces a new one), and
        # CreateConfiguration refuses an existing name (ConflictException); Pulumi's auto-name gives each a new one.
        configuration = aws.msk.Configuration(
            f"{name}-config", kafka_versions=[config.kafka_version],
            description="modelplane brokers: topics only from the topics Job, no unclean leader election",
            server_properties="\n".join([
                "auto.create.topics.enable=false",
                f"default.replication.factor={replication}",
                f"min.insync.replicas={max(1, replication - 1)}",
                "unclean.leader.election.enable=false",
            ]) + "\n", opts=child)
        cluster = aws.msk.Cluster(
            f"{name}-kafka",
            cluster_name=physical,
            kafka_version=config.kafka_version,
            number_of_broker_nodes=config.brokers,
            broker_node_group_info={
                "client_subnets": list(subnet_ids)[:config.zones],
                "instance_type": config.broker_instance_type,
                "security_groups": [sg.id],
                "storage_info": {"ebs_storage_info": {"volume_size": config.volume_size_gb}},
                "connectivity_info": {"public_access": {"type": "DISABLED"}},
            },
            client_authentication={"sasl": {"iam": True, "scram": False}, "unauthenticated": False},
            encryption_info={"encryption_at_rest_kms_key_arn": key.arn,
                             "encryption_in_transit": {"client_broker": "TLS", "in_cluster": True}},
            configuration_info={"arn": configuration.arn, "revision": configuration.latest_revision},
            logging_info={"broker_logs": {"cloudwatch_logs": {"enabled": True, "log_group": logs.name}}},
            enhanced_monitoring=config.enhanced_monitoring,
            open_monitoring={"prometheus": {"jmx_exporter": {"enabled_in_broker": config.open_monitoring},
                                            "node_exporter": {"enabled_in_broker": config.open_monitoring}}},
            opts=pulumi.ResourceOptions(parent=self, protect=protect),
        )
        self.bootstrap_brokers = cluster.bootstrap_brokers_sasl_iam
        self.cluster_arn = cluster.arn
        self.cluster_name = cluster.cluster_name
        self.register_outputs({"bootstrap_brokers": self.bootstrap_brokers, "cluster_arn": self.cluster_arn,
                               "cluster_name": self.cluster_name})

    def grant_produce(self, topics: Sequence[str]) -> Grant:
        """Write (idempotently) to `topics`."""
        return Grant(statements=(self._cluster(PRODUCE_CLUSTER_ACTIONS),
                                 self._named("topic", _names("topics", topics), PRODUCE_TOPIC_ACTIONS)))

    def grant_consume(self, topics: Sequence[str], groups: Sequence[str]) -> Grant:
        """Read `topics` as a member of `groups` (join, commit offsets)."""
        return Grant(statements=(self._cluster((CONNECT,)),
                                 self._named("topic", _names("topics", topics), CONSUME_TOPIC_ACTIONS),
                                 self._named("group", _names("groups", groups), CONSUME_GROUP_ACTIONS)))

    def grant_manage_topics(self, topics: Sequence[str]) -> Grant:
        """Create `topics`, add partitions and set their configs (the topics Job); no deletes."""
        return Grant(statements=(self._cluster(MANAGE_CLUSTER_ACTIONS),
                                 self._named("topic", _names("topics", topics), MANAGE_TOPIC_ACTIONS)))

    def _cluster(self, actions: Sequence[str]) -> pulumi.Output[PolicyStatement]:
        return self.cluster_arn.apply(lambda arn: {"Effect": "Allow", "Action": list(actions), "Resource": arn})

    def _named(self, kind: str, names: Sequence[str], actions: Sequence[str]) -> pulumi.Output[PolicyStatement]:
        """`actions` on the `kind` (topic, group) ARNs of `names` in this cluster."""
        def statement(arn: str) -> PolicyStatement:
            base = arn.replace(":cluster/", f":{kind}/", 1)
            return {"Effect": "Allow", "Action": list(actions), "Resource": [f"{base}/{n}" for n in names]}
        return self.cluster_arn.apply(statement)


def _names(what: str, names: Sequence[str]) -> list[str]:
    """`names` as a sorted list; at least one, none empty (an empty one would grant the whole cluster's `what`)."""
    if isinstance(names, str) or not names or not all(names):
        raise ValueError(f"{what} must be a non-empty list of non-empty names (got {names!r})")
    return sorted(set(names))

