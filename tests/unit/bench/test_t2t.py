"""How the tick-to-trade harness joins the node's probes with its own stamps (no processes: synthetic rows)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.t2t import STAGES, Timeline, attribute, bench_params
from engine.live import layout as NL


def _timeline(first_seqs: list[int], counts: list[int], arrivals: list[int]) -> Timeline:
    n = len(first_seqs)
    line = Timeline(
        intended=np.arange(n, dtype=np.int64) * 1000 + 10_000,
        sent=np.arange(n, dtype=np.int64) * 1000 + 10_100,
        first_seq=np.array(first_seqs, np.int64),
        end_seq=np.array(first_seqs, np.int64) + counts,
    )
    line.n_ticks = n
    line.arrivals[: len(arrivals)] = arrivals
    line.n_arrivals = len(arrivals)
    return line


def _probe(seq: int, recv: int, first_message: int) -> np.ndarray:
    row = np.zeros(NL.N_PR, np.int64)
    row[NL.PR_SEQ] = seq
    row[[NL.PR_RECV_NS, NL.PR_DECODED_NS, NL.PR_STEP_NS, NL.PR_BOOKED_NS]] = recv, recv + 50, recv + 60, recv + 70
    row[NL.PR_RISK_NS], row[NL.PR_ENCODE_NS] = 5, 7
    row[NL.PR_STEPPED_NS], row[NL.PR_OFFERED_NS] = recv + 100, recv + 120
    row[NL.PR_FIRST_MESSAGE] = first_message
    return row


def test_a_probe_counts_for_the_tick_its_newest_message_came_from_and_stages_telescope() -> None:
    # ticks 0..2 carry sequence numbers 1-2, 5-6, 9-10; 3-4 and 7-8 are the node's own orders echoed in ITCH
    line = _timeline([1, 5, 9], [2, 2, 2], arrivals=[10_400, 10_410, 11_450, 12_500])
    probes = np.stack([_probe(2, 10_200, 0), _probe(4, 10_300, 1), _probe(6, 11_200, 2), _probe(10, 12_250, 3)])
    joined = attribute(line, probes, warm_ticks=0)
    assert joined["tick"].tolist() == [0, 1, 2]  # the probe of seq 4 (our own order's echo) belongs to no tick
    assert joined["internal_ns"].tolist() == [120, 120, 120]
    assert joined["wire_to_wire_ns"].tolist() == [400, 450, 500]
    assert joined["sent_to_exchange_ns"].tolist() == [300, 350, 400]
    assert joined["wire_out"].tolist() == [80, 130, 130]
    assert joined["strategy"].tolist() == [30 - 12] * 3
    total = sum(joined[name] for name in STAGES)
    assert (total == joined["wire_to_wire_ns"]).all()


def test_warm_up_ticks_unsent_probes_and_second_probes_of_a_tick_are_left_out() -> None:
    line = _timeline([1, 3, 5], [2, 2, 2], arrivals=[10_400, 11_400, 11_500])
    unsent = _probe(6, 12_200, 2)
    unsent[NL.PR_OFFERED_NS] = 0
    probes = np.stack([_probe(1, 10_200, 0), _probe(3, 11_200, 1), _probe(4, 11_300, 2), unsent])
    joined = attribute(line, probes, warm_ticks=1)
    assert joined["tick"].tolist() == [1]
    assert joined["wire_to_wire_ns"].tolist() == [11_400 - 11_000]


def test_a_probe_whose_order_never_reached_the_exchange_is_left_out() -> None:
    line = _timeline([1], [2], arrivals=[])
    assert len(attribute(line, _probe(2, 10_200, 0)[None, :], warm_ticks=0)["tick"]) == 0


def test_bench_params_keep_what_the_strategy_has_and_reject_the_rest() -> None:
    assert bench_params("grid", {})["half_spread_ticks"] == 3
    assert "half_spread_ticks" not in bench_params("glft", {})
    assert bench_params("grid", {"levels": 2})["levels"] == 2
    with pytest.raises(ValueError, match="no parameter"):
        bench_params("grid", {"bogus": 1})
    with pytest.raises(ValueError, match="unknown strategy"):
        bench_params("nope", {})
