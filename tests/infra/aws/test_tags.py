"""Global tags: one transform, documented precedence, on every taggable AWS resource."""

from infra.aws.tags import is_taggable, merge_tags
from infra.review.graph import Graph


def test_platform_tags_beat_resource_tags_which_beat_stack_tags() -> None:
    merged = merge_tags({"owner": "team", "Name": "stack-level"}, {"Name": "resource-level", "environment": "x"}, "prod")
    assert merged == {"owner": "team", "Name": "resource-level", "environment": "prod", "project": "modelplane",
                      "managed-by": "pulumi"}


def test_every_taggable_aws_resource_carries_the_required_tags(prod: Graph) -> None:
    taggable = [r for r in prod.resources if r.type.startswith("aws:") and is_taggable(r.type)]
    assert len(taggable) > 50
    for resource in taggable:
        tags = resource.inputs.get("tags", {})
        for key in ("environment", "owner", "cost-center", "project", "managed-by"):
            assert key in tags, f"{resource.urn} lacks tag {key}"
        assert tags["environment"] == "prod"


def test_resource_specific_tags_survive_the_merge(prod: Graph) -> None:
    vpc = prod.one("aws:ec2/vpc:Vpc")
    assert vpc.inputs["tags"]["Name"] == "network-vpc"
    assert vpc.inputs["tags"]["owner"] == "ml-platform"


def test_untaggable_types_are_left_alone(prod: Graph) -> None:
    assert not is_taggable("aws:ec2/route:Route")
    assert all("tags" not in r.inputs for r in prod.of_type("aws:ec2/route:Route"))
    assert is_taggable("aws:ec2/vpc:Vpc")
