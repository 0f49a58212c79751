"""The lab contract: every registered lab has the same shape, and its Params are the only home
of its parameters (the notebook's parameters cell is generated from them)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nbformat
import pytest
from sampling import sampled

from perfkit import notebooks, registry
from perfkit.errors import ConfigError
from perfkit.lab import Lab, LabParams, Results, literal, param

REPO = Path(__file__).resolve().parent.parent
LABS = registry.LABS


@dataclasses.dataclass(frozen=True, kw_only=True)
class ToyParams(LabParams):
    size: int | None = param(None, "how many", full=100, quick=5)
    names: tuple[str, ...] = param(("a", "b"), "which")
    ratio: float = param(0.5, "how much")

    def check(self) -> None:
        if self.size is not None and self.size < 1:
            raise ConfigError(f"parameter 'size' must be >= 1, got {self.size}")


def _parameters_cell(lab: Lab) -> str:
    nb = nbformat.read(REPO / "notebooks" / lab.notebook, as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    return cell.source


@pytest.mark.parametrize("lab", LABS, ids=lambda lab: lab.name)
def test_notebook_parameters_cell_is_generated_from_the_labs_params(lab: Lab) -> None:
    assert _parameters_cell(lab) == lab.Params.notebook_cell(), (
        f"{lab.notebook} is out of step with {lab.Params.__module__}.Params: "
        "run python -m perfkit.notebooks --sync-labs"
    )


@pytest.mark.parametrize("lab", LABS, ids=lambda lab: lab.name)
def test_papermill_sees_the_same_names_and_defaults_as_params(lab: Lab) -> None:
    import papermill

    inspected = papermill.inspect_notebook(str(REPO / "notebooks" / lab.notebook))
    declared = lab.Params.parameters()
    assert list(inspected) == list(declared)
    for name, info in inspected.items():
        assert info["default"] == literal(declared[name].default)
        assert info["help"] == declared[name].help


@pytest.mark.parametrize("lab", LABS, ids=lambda lab: lab.name)
def test_every_lab_has_the_contract_shape(lab: Lab) -> None:
    assert isinstance(lab, Lab)
    assert issubclass(lab.Params, LabParams)
    assert lab.Params.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert (REPO / "notebooks" / lab.notebook).is_file()
    assert (
        "from_notebook(globals())"
        in nbformat.read(REPO / "notebooks" / lab.notebook, as_version=4).cells[2].source
    )


@pytest.mark.parametrize("lab", LABS, ids=lambda lab: lab.name)
def test_default_and_quick_params_of_every_lab_are_valid(lab: Lab) -> None:
    lab.Params()
    lab.Params(quick=True)


@pytest.mark.parametrize("lab", LABS, ids=lambda lab: lab.name)
def test_unknown_parameter_is_an_error_naming_it(lab: Lab) -> None:
    with pytest.raises(ConfigError, match="unknown parameter no_such_thing"):
        lab.Params.from_mapping({"no_such_thing": 1})


@pytest.mark.parametrize("lab", LABS, ids=lambda lab: lab.name)
def test_ill_typed_parameter_is_an_error_naming_it(lab: Lab) -> None:
    with pytest.raises(ConfigError, match="parameter 'quick' expects bool"):
        lab.Params.from_mapping({"quick": "yes"})


def test_lab_names_and_notebooks_are_unique() -> None:
    assert len({lab.name for lab in LABS}) == len({lab.notebook for lab in LABS}) == len(LABS)


def test_unknown_lab_name_lists_the_labs() -> None:
    with pytest.raises(
        ConfigError, match="the labs are: retry, pool, lifecycle, streaming, pgbouncer"
    ):
        registry.get("nosuch")


def test_none_resolves_to_the_full_or_the_quick_default_at_construction() -> None:
    assert ToyParams().size == 100
    assert ToyParams(quick=True).size == 5
    assert ToyParams(size=7, quick=True).size == 7


def test_as_dict_keeps_the_values_as_given() -> None:
    assert ToyParams(quick=True).as_dict()["size"] is None


@dataclasses.dataclass(frozen=True, kw_only=True)
class DerivedParams(ToyParams):
    label: str | None = param(None, "what to call it (None: from size)")

    def derived(self) -> dict[str, object]:
        return {"label": self.label if self.label is not None else f"size {self.size}"}

    def check(self) -> None:
        super().check()
        if self.label is None:
            raise ConfigError("check() ran before derived()")


def test_derived_values_are_set_after_none_is_resolved_and_before_check() -> None:
    assert DerivedParams(quick=True).label == "size 5"  # sees the resolved quick default
    assert DerivedParams(label="mine").label == "mine"
    assert DerivedParams().replace(quick=True).label == "size 5"  # derived anew


def test_as_dict_gives_derived_values_as_given() -> None:
    assert DerivedParams().as_dict()["label"] is None


def test_derived_may_only_name_parameters() -> None:
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Bad(ToyParams):
        def derived(self) -> dict[str, object]:
            return {"nosuch": 1}

    with pytest.raises(TypeError, match="'nosuch': not a parameter"):
        Bad()


def test_replace_resolves_none_defaults_anew() -> None:
    assert ToyParams().replace(quick=True).size == 5


def test_help_line_says_what_none_means() -> None:
    assert "size = None  # how many; None: 100 (quick 5)" in ToyParams.notebook_cell()


def test_sequences_are_lists_in_the_notebook_and_tuples_in_params() -> None:
    assert 'names = ["a", "b"]  # which' in ToyParams.notebook_cell()
    assert ToyParams.from_mapping({"names": ["x"]}).names == ("x",)


def test_int_given_for_a_float_parameter_becomes_a_float() -> None:
    ratio = ToyParams.from_mapping({"ratio": 1}).ratio
    assert ratio == 1.0 and isinstance(ratio, float)


def test_value_checks_run_when_params_are_built() -> None:
    with pytest.raises(ConfigError, match="'size' must be >= 1"):
        ToyParams.from_mapping({"size": 0})


def test_backend_outside_its_choices_is_an_error() -> None:
    with pytest.raises(ConfigError, match="'backend' must be one of"):
        ToyParams(backend="external")


def test_as_dict_gives_lists_as_a_notebook_would_pass_them() -> None:
    assert ToyParams().as_dict()["names"] == ["a", "b"]


def test_results_without_samples_give_an_empty_samples_frame() -> None:
    samples = Results(frames={}).samples
    assert samples.empty and list(samples.columns) == ["metric", "variant", "unit", "value"]


@pytest.mark.parametrize("lab", LABS, ids=lambda lab: lab.name)
def test_validate_parameters_applies_the_labs_value_checks_before_a_kernel(lab: Lab) -> None:
    bad = {"retry": {"repetitions": 0}, "pool": {"pool_sizes": [0]}}
    bad |= {"lifecycle": {"repetitions": 0}, "streaming": {"repeats": 0}}
    bad |= {"pgbouncer": {"storm_clients": 0}}
    with pytest.raises(ConfigError, match=lab.notebook):
        notebooks.validate_parameters(REPO / "notebooks" / lab.notebook, bad[lab.name])


BAD_VALUES = {
    "retry": {"strategies": ["nope"]},
    "pool": {"worker_counts": [0]},
    "lifecycle": {"strategies": ["per-test-container"]},
    "streaming": {"methods": ["slurp"]},
    "pgbouncer": {"pool_workers": [0]},
}


#: Each lab's notebook is started in a kernel to be refused: one lab in the default run, every
#: other with ``-m slow``.
KERNEL_LABS = sampled(LABS, [lab for lab in LABS if lab.name == "pool"])


@pytest.mark.notebook
@pytest.mark.parametrize("lab", KERNEL_LABS, ids=lambda lab: lab.name)
def test_plain_papermill_run_with_a_bad_value_fails_in_the_validation_cell(
    lab: Lab, tmp_path: Path
) -> None:
    """Without perfkit's pre-kernel check (plain papermill, or JupyterLab), the notebook's
    own second cell refuses the value before any server starts."""
    import papermill

    out = tmp_path / "data"
    values = {"quick": True, "backend": "local", "out_dir": str(out), **BAD_VALUES[lab.name]}
    with pytest.raises(papermill.PapermillExecutionError) as info:
        papermill.execute_notebook(
            str(REPO / "notebooks" / lab.notebook),
            str(tmp_path / "executed.ipynb"),
            parameters=values,
            cwd=str(tmp_path),
            progress_bar=False,
        )
    assert info.value.ename == "ConfigError"
    assert "from_notebook(globals())" in info.value.source  # the cell after the parameters
    assert not out.exists()


@pytest.mark.parametrize("lab", LABS, ids=lambda lab: lab.name)
def test_generated_parameters_cell_fits_the_line_length(lab: Lab) -> None:
    long = [line for line in lab.Params.notebook_cell().splitlines() if len(line) > 100]
    assert not long, "shorten these parameters' help (ruff's line length is 100)"


def test_importing_the_lab_contract_loads_no_pandas_or_numpy() -> None:
    import subprocess
    import sys

    code = "import sys, perfkit.lab; print(sorted({'pandas', 'numpy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("lab", LABS, ids=lambda lab: lab.name)
def test_params_show_in_a_notebook_as_name_value_items_that_wrap_at_spaces(lab: Lab) -> None:
    html = lab.Params(quick=True)._repr_html_()
    names = [f.name for f in dataclasses.fields(lab.Params)]
    assert all(f"{name} = " in html for name in names)
    assert "break-all" not in html and "nowrap" not in html
