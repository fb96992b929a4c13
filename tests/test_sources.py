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
