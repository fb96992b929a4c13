"""Several sources as one (MultiSource): inventories added up, in the one common order."""
from __future__ import annotations

from fakes import FakeEngine

from lbgen.model import Skipped
from lbgen.sources import MultiSource
from lbgen.sources.docker import DockerSource
from lbgen.sources.inventory import FileSource

NET = "lbnet"


def test_multi_source_adds_inventories_in_the_common_order(tmp_path):
    engine = FakeEngine()
    engine.add_backend("web-blue-2", "web", "blue", address="192.0.2.2")
    engine.add_backend("web-old", "web", "blue", running=False)
    path = tmp_path / "inventory.yaml"
    path.write_text("backends:\n  - {service: web, env: blue, name: web-blue-1, address: 10.1.0.1, port: 80}\n")

    inventory = MultiSource([DockerSource(engine, NET), FileSource(path)]).discover()

    assert [(b.name, b.source) for b in inventory.backends] == [("web-blue-1", "file"), ("web-blue-2", "docker")]
    assert inventory.skipped == (Skipped("web-old", "not running"),)


def test_an_inventory_groups_its_backends_by_service_sorted_or_not():
    """for_service gives a service's backends in inventory order, whether the inventory comes grouped by
    service (every source sorts it so) or interleaved (built by hand)."""
    from lbgen.model import Backend, Inventory

    def backend(service, name):
        return Backend(service, None, name, name, "10.0.0.1", 80)

    grouped = (backend("api", "a1"), backend("api", "a2"), backend("web", "w1"))
    interleaved = (backend("web", "w2"), backend("api", "a1"), backend("web", "w1"), backend("api", "a2"))
    assert Inventory(grouped).for_service("api") == grouped[:2]
    assert Inventory(grouped).for_service("web") == grouped[2:]
    assert Inventory(interleaved).for_service("web") == (interleaved[0], interleaved[2])
    assert Inventory(interleaved).for_service("api") == (interleaved[1], interleaved[3])
    assert Inventory(interleaved).for_service("db") == ()
