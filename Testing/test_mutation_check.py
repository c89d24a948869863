"""Scripts/mutation_check.py stays applicable: every mutation's original text is in its file exactly once
(a refactor that moves a constant must move its mutation too, or the check would silently test nothing)."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_mutation_applies_to_the_current_code():
    spec = importlib.util.spec_from_file_location("mutation_check", ROOT / "Scripts" / "mutation_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert len(module.MUTATIONS) >= 10
    for name, rel, original, mutated, tests in module.MUTATIONS:
        assert (ROOT / rel).read_text().count(original) == 1, f"{name}: {original!r} not found once in {rel}"
        assert original != mutated and all((ROOT / t).is_file() for t in tests), name
