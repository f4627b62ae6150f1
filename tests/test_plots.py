"""PNG plots (size and format read back from the file) and terminal sparklines."""

from __future__ import annotations

import math
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from training_db.ops.plots import (
    MISSING_MATPLOTLIB,
    SPARK_BLOCKS,
    _mean_and_spread,
    plot_band,
    plot_curves,
    sparkline,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, which always comes first."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    length, chunk_type = struct.unpack(">I4s", data[8:16])
    assert chunk_type == b"IHDR"
    assert length == 13
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def curve(scale: float, length: int = 50) -> tuple[list[int], list[float]]:
    return list(range(length)), [scale / (1 + 0.1 * step) for step in range(length)]


@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every ``import matplotlib...`` fail, as if it were not installed."""
    pytest.importorskip("matplotlib")
    loaded = [name for name in sys.modules if name.split(".")[0] == "matplotlib"]
    for name in {"matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg", *loaded}:
        monkeypatch.setitem(sys.modules, name, None)


# --- plot_curves / plot_band ------------------------------------------------------------------


def test_plot_curves_writes_a_png_of_the_requested_size(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    output = tmp_path / "loss.png"
    written = plot_curves({"mgda_001": curve(1.0), "pcgrad_002": curve(2.0)}, "train/loss", output)
    assert written == output
    assert output.stat().st_size > 0
    assert png_size(output) == (1200, 700)


@pytest.mark.parametrize(("width_px", "height_px", "dpi"), [(641, 479, 72), (1001, 333, 150)])
def test_plot_curves_honours_odd_sizes_and_dpi(
    tmp_path: Path, width_px: int, height_px: int, dpi: int
) -> None:
    pytest.importorskip("matplotlib")
    output = str(tmp_path / "odd.png")
    written = plot_curves(
        {"run": curve(1.0)},
        "train/loss",
        output,
        title="odd",
        width_px=width_px,
        height_px=height_px,
        dpi=dpi,
    )
    assert written == Path(output)
    assert png_size(written) == (width_px, height_px)


def test_plot_curves_draws_nan_as_a_gap(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    steps, values = curve(1.0)
    values[10] = math.nan
    assert png_size(plot_curves({"run": (steps, values)}, "m", tmp_path / "gap.png")) == (1200, 700)


def test_plot_band_writes_a_png_of_the_requested_size(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    groups = {
        "mgda": [curve(1.0), curve(1.2), curve(0.8, length=30)],
        "pcgrad": [curve(2.0)],
        "nash": [],
    }
    output = plot_band(groups, "train/loss", tmp_path / "band.png", width_px=800, height_px=600)
    assert output.stat().st_size > 0
    assert png_size(output) == (800, 600)


def test_band_mean_uses_the_runs_that_logged_each_step() -> None:
    runs = [([0, 1, 2], [1.0, 2.0, 3.0]), ([1, 2, 3], [4.0, math.nan, 5.0])]
    steps, means, spreads = _mean_and_spread("g", runs)
    assert steps == [0, 1, 2, 3]
    assert means == [1.0, 3.0, 3.0, 5.0]
    assert spreads == [0.0, pytest.approx(math.sqrt(2)), 0.0, 0.0]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda out: plot_curves({}, "m", out), "at least one curve"),
        (lambda out: plot_curves({"r": ([0, 1], [1.0])}, "m", out), "curve 'r' has 2 steps"),
        (lambda out: plot_band({"g": []}, "m", out), "at least one group"),
        (lambda out: plot_band({"g": [([0], [1.0, 2.0])]}, "m", out), "curve 'g' has 1 steps"),
        (lambda out: plot_curves({"r": curve(1.0)}, "m", out, dpi=0), "must be positive"),
    ],
)
def test_plots_reject_bad_input(tmp_path: Path, call: object, message: str) -> None:
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match=message):
        call(tmp_path / "x.png")  # type: ignore[operator]
    assert not (tmp_path / "x.png").exists()


@pytest.mark.usefixtures("no_matplotlib")
def test_plot_curves_without_matplotlib_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(ImportError) as raised:
        plot_curves({"run": curve(1.0)}, "m", tmp_path / "x.png")
    assert str(raised.value) == "plotting needs matplotlib: pip install 'mangodb[plot]'"
    assert str(raised.value) == MISSING_MATPLOTLIB


@pytest.mark.usefixtures("no_matplotlib")
def test_plot_band_without_matplotlib_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(ImportError, match=r"pip install 'mangodb\[plot\]'"):
        plot_band({"g": [curve(1.0)]}, "m", tmp_path / "x.png")


def test_modules_import_and_work_without_matplotlib_or_numpy() -> None:
    code = (
        "import sys\n"
        "for name in ('matplotlib', 'numpy', 'pandas'):\n"
        "    sys.modules[name] = None\n"
        "from training_db.ops import analysis, plots\n"
        "print(plots.sparkline([1.0, 2.0]), analysis.detect_spikes([0, 1], [1.0, 2.0]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "▁█ []"


# --- sparkline --------------------------------------------------------------------------------


def test_sparkline_maps_lowest_to_bottom_and_highest_to_full_block() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([5.0, -1.0, 3.0]) == "█▁▆"


def test_sparkline_resamples_long_series_to_width() -> None:
    line = sparkline([float(value) for value in range(400)], width=40)
    assert len(line) == 40
    assert line[0] == "▁"
    assert line[-1] == "█"
    assert list(line) == sorted(line, key=SPARK_BLOCKS.index)


def test_sparkline_does_not_stretch_short_series() -> None:
    assert len(sparkline([1.0, 2.0, 3.0], width=40)) == 3


def test_sparkline_shows_nan_and_missing_as_space() -> None:
    assert sparkline([0.0, math.nan, 1.0, None, 0.5]) == "▁ █ ▅"


def test_sparkline_bucket_with_a_nan_is_a_space_but_missing_values_are_skipped() -> None:
    values: list[float | None] = [0.0, 0.0, 1.0, math.inf, 2.0, None, None, None]
    assert sparkline(values, width=4) == "▁ █ "


def test_sparkline_edge_cases() -> None:
    assert sparkline([]) == ""
    assert sparkline([None, math.nan]) == "  "
    assert sparkline([2.5] * 5) == "▄▄▄▄▄"
    with pytest.raises(ValueError, match="width must be at least 1"):
        sparkline([1.0], width=0)


@given(
    values=st.lists(
        st.one_of(st.none(), st.floats(min_value=-1e9, max_value=1e9), st.just(math.nan)),
        max_size=120,
    ),
    width=st.integers(min_value=1, max_value=60),
)
def test_sparkline_shape(values: list[float | None], width: int) -> None:
    line = sparkline(values, width=width)
    assert len(line) == min(len(values), width)
    assert set(line) <= set(SPARK_BLOCKS) | {" "}
    drawn = set(line) - {" "}
    if len(drawn) > 1:
        assert {"▁", "█"} <= drawn
