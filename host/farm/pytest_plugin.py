"""Model checks on boards as plain pytest tests (registered by the `pytest11` entry point in pyproject.toml).

    def test_my_model(k210_hil):
        assert k210_hil("my.kmodel", data="photos/").passed

    pytest --k210-port /dev/ttyUSB0         (repeatable; or K210_PORT)
    pytest --k210-place 'k210-*'            (labgrid places, held for the whole session)
    pytest --k210-boards boards.yaml        (a hardware map)
    pytest --k210-virtual                   (a virtual board, `k210 board`)

Fixtures: k210_boards (the session's boards: URLs and line rate), k210_board (a connected
BoardSession on the first board), k210_hil (one call runs `k210 hil` and returns its report).
A test that needs a board is skipped, with the reason, when no board is given; under CI=true it
fails instead, as everything skipped does in this project's own suite.

This module is imported by every pytest run once k210-deploy is installed: it imports nothing heavy
at the top, and adds nothing but options and fixtures.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

NO_BOARD = ("no K210 board: pass --k210-port URL, --k210-place NAME, --k210-boards FILE or --k210-virtual "
            "(or set K210_PORT)")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("k210", "K210 boards (k210-deploy's k210_board and k210_hil fixtures)")
    group.addoption("--k210-port", action="append", default=[], metavar="URL",
                    help="a board's port (anything pyserial opens); repeat it to shard over boards (default K210_PORT)")
    group.addoption("--k210-place", action="append", default=[], metavar="NAME|GLOB|TAG=VALUE",
                    help="a labgrid place (or every free one a glob or tags match), held for the whole session")
    group.addoption("--k210-coordinator", metavar="HOST:PORT",
                    help="labgrid coordinator (default LG_COORDINATOR, else 127.0.0.1:20408)")
    group.addoption("--k210-place-timeout", type=float, default=0.0, metavar="S",
                    help="wait up to S seconds for a place somebody else holds (default: refuse at once)")
    group.addoption("--k210-boards", metavar="FILE", help="a hardware map (boards.yaml): every board in it")
    group.addoption("--k210-virtual", action="store_true", help="a virtual board (k210 board) on a pty")
    group.addoption("--k210-baud", type=int, metavar="BAUD", help="line rate (default K210_BAUD, else 1500000)")


@dataclass
class Boards:
    """The boards this pytest session may use: what k210_hil shards over."""

    urls: list[str]
    baud: int
    virtual: bool = False  # a virtual board: k210_hil uploads the model (nothing is flashed on it)
    places: list[str] = field(default_factory=list)  # labgrid place names, in the order of urls


class HilReport(dict):
    """`k210 hil`'s report (every output's figures and the verdict), its keys also as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def text(self) -> str:
        from k210.host.hil.report import render

        return render(self)


def _wanted(config: pytest.Config) -> bool:
    return bool(config.getoption("k210_port") or config.getoption("k210_place") or config.getoption("k210_boards")
                or config.getoption("k210_virtual") or os.environ.get("K210_PORT", "").strip())


def _no_board() -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{NO_BOARD}; CI=true makes a test without its board a failure", pytrace=False)
    pytest.skip(NO_BOARD)


@pytest.fixture(scope="session")
def k210_boards(request: pytest.FixtureRequest) -> Iterator[Boards]:
    """The session's boards, from the options; labgrid places are acquired here and released at the end."""
    from k210.core.errors import K210Error
    from k210.host.farm import boardmap

    config = request.config
    if not _wanted(config):
        _no_board()
    try:
        baud = config.getoption("k210_baud") or boardmap.env_baud(1_500_000)
        urls = list(config.getoption("k210_port"))
        board_map: list[boardmap.Board] = []
        if config.getoption("k210_boards"):
            board_map = boardmap.load_boards(config.getoption("k210_boards"))
            urls += [b.port for b in board_map]
            baud = config.getoption("k210_baud") or boardmap.common_baud(board_map, baud)
        if not (urls or config.getoption("k210_place") or config.getoption("k210_virtual")):
            urls = boardmap.env_ports()
        boardmap.reset_boards(board_map)
    except K210Error as exc:
        pytest.fail(f"k210 boards: {exc}", pytrace=False)
    with contextlib.ExitStack() as stack:
        places = []
        try:
            if config.getoption("k210_place"):
                from k210.host.farm.lease import PlaceLease

                lease = PlaceLease(config.getoption("k210_place"), coordinator=config.getoption("k210_coordinator"),
                                   timeout=config.getoption("k210_place_timeout"))
                places = stack.enter_context(lease).places  # released as the session ends
            if config.getoption("k210_virtual"):
                from k210.host.hil.handlers import virtual_board

                board = virtual_board(baud=baud)
                stack.callback(board.stop)
                urls.append(board.start())
        except K210Error as exc:
            pytest.fail(f"k210 boards: {exc}", pytrace=False)
        yield Boards(urls + [p.url for p in places], baud, virtual=bool(config.getoption("k210_virtual")),
                     places=[p.name for p in places])


@pytest.fixture
def k210_board(k210_boards: Boards) -> Iterator[Any]:
    """A BoardSession on the first board, its HELLO exchanged (`k210_board.hello`); closed after the test."""
    from k210.host.hil.ports import open_port
    from k210.host.hil.session import BoardSession

    session = BoardSession(open_port(k210_boards.urls[0], k210_boards.baud), connect_timeout=10)
    try:
        session.connect()
        yield session
    finally:
        session.port.close()


@pytest.fixture
def k210_hil(k210_boards: Boards, request: pytest.FixtureRequest) -> Callable[..., HilReport]:
    """`k210_hil(kmodel, data=..., dataset=..., limit=..., **HilConfig fields)`: the report of a run on the boards.

    Every board of the session shares the images. The verdict is `.passed`; the figures are the report's
    keys (board_vs_simulator, board_vs_reference, images_per_s, ...). A board that fails raises, as
    `k210 hil` exits 3."""

    def check(kmodel: str | os.PathLike[str], *, data: str | os.PathLike[str] | None = None,
              dataset: str | None = None, **options: Any) -> HilReport:
        from k210.host.hil.run import HilConfig, run_hil

        options.setdefault("upload", k210_boards.virtual)
        config = HilConfig(kmodel=str(kmodel), ports=list(k210_boards.urls), baud=k210_boards.baud,
                           data=None if data is None else str(data), dataset=dataset, **options)
        report = HilReport(run_hil(config))
        for key in ("passed", "count", "images_per_s"):  # into JUnit XML as the test's properties
            if key in report:
                request.node.user_properties.append((f"k210_{key}", report[key]))
        return report

    return check
