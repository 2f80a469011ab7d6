"""`modelplane cost --base`: a resource moved to an instance type the price table lacks makes the change unknown,
never a saving computed as if the resource had become free, nor `unbounded`."""

from infra.review.cost import delta as deltas
from infra.review.cost.estimate import estimate
from infra.review.graph import Graph, Resource

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"


def _graph(kind: str) -> Graph:
    group = Resource(urn=f"urn:pulumi:prod::modelplane::{NODE_GROUP}::system", type=NODE_GROUP, name="system", parent="",
                     provider="", inputs={"instanceTypes": [kind], "scalingConfig": {"minSize": 3, "maxSize": 6}})
    return Graph(stack="prod", resources=[group])


def test_a_change_to_an_unpriced_type_is_unknown_not_a_saving() -> None:
    found = deltas.cost_delta(estimate(_graph("m7i.xlarge")), estimate(_graph("m7i.8xlarge")), base="main")
    assert found.total() == (None, None) and found.unpriced == ["m7i.8xlarge"]
    assert found.to_dict()["delta"] == {"min": None, "max": None} and found.to_dict()["unpriced"] == ["m7i.8xlarge"]
    markdown = deltas.to_markdown(found)
    assert markdown.startswith("**unpriced (m7i.8xlarge not in the price table)** per month")
    assert "| `NodeGroup system` | $441.50..$883.01 | unpriced | unpriced (m7i.8xlarge" in markdown
    assert "-$" not in markdown and "unbounded" not in markdown


def test_priced_changes_keep_their_figures() -> None:
    found = deltas.cost_delta(estimate(_graph("m7i.xlarge")), estimate(_graph("m7i.2xlarge")), base="main")
    low, high = found.total()
    assert found.unpriced == [] and round(low or 0, 2) == 441.50 and round(high or 0, 2) == 883.01
