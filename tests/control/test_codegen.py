"""The checked-in generated code matches guacr/control/v1/control.proto."""

from __future__ import annotations

from pathlib import Path

from guacr.control import codegen


def test_generated_code_matches_proto(tmp_path: Path) -> None:
    fresh = codegen.generate(tmp_path)
    target = codegen.PACKAGE_ROOT / Path(codegen.PROTO).parent
    for name, text in fresh.items():
        checked_in = (target / name).read_text()
        assert codegen.normalise(checked_in) == codegen.normalise(text), (
            f"{name} is stale: run `python -m guacr.control.codegen`"
        )


def test_staleness_is_detected(tmp_path: Path) -> None:
    """A changed .proto must change the output (the comparison can fail)."""
    fresh = codegen.generate(tmp_path)
    proto = codegen.PACKAGE_ROOT / codegen.PROTO
    changed = tmp_path / "changed"
    (changed / "guacr/control/v1").mkdir(parents=True)
    (changed / codegen.PROTO).write_text(
        proto.read_text().replace("message GetStatusRequest {}", "message GetStatusRequest { bool x = 1; }")
    )
    out = tmp_path / "out"
    out.mkdir()
    other = codegen.generate(out, root=changed)
    assert codegen.normalise(other["control_pb2.py"]) != codegen.normalise(fresh["control_pb2.py"])
