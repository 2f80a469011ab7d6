"""The offline render's made-up outputs have the forms AWS gives them (here: Secrets Manager ARNs and ids)."""

import re

from infra.review.graph import Graph

# docs.aws.amazon.com/secretsmanager/latest/userguide/whats-in-a-secret.html:
# arn:aws:secretsmanager:<Region>:<AccountId>:secret:SecretName-6RandomCharacters
SECRET_ARN = re.compile(r"^arn:aws:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+-[A-Za-z0-9]{6}$")


def test_the_secret_version_names_its_secret_by_arn_as_the_provider_does(prod: Graph) -> None:
    # terraform-provider-aws (bridged by pulumi-aws): the id of aws_secretsmanager_secret is its ARN.
    version = prod.one("aws:secretsmanager/secretVersion:SecretVersion")
    assert SECRET_ARN.match(version.inputs["secretId"]), version.inputs["secretId"]
    assert ":secret/" not in version.inputs["secretId"]
