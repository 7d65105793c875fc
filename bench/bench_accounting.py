"""A site ledger's epsilon after many rounds: ``epsilon_of`` (entries of one mechanism summed first) against
Opacus' accountant fed one entry per round, side by side in one process; both give the same epsilon.
Usage: python -m bench.bench_accounting"""

from __future__ import annotations

import argparse

from bench.common import best_time, write_result
from cxr_fedsynth.common.privacy.accounting import epsilon_of, make_accountant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, nargs="+", default=[1, 20, 100])
    args = parser.parse_args()
    rows = []
    for rounds in args.rounds:
        history = [(1.3637, 0.189, 15)] * rounds  # one ledger entry per round, as a site records them
        t_summed = best_time(lambda: epsilon_of(history, delta=1e-5), repeats=3)
        t_per_entry = best_time(lambda: make_accountant(history).get_epsilon(1e-5), repeats=1, warmup=0)
        same = abs(epsilon_of(history, delta=1e-5) - make_accountant(history).get_epsilon(1e-5)) < 1e-9
        rows.append(
            {
                "rounds": rounds,
                "summed_s": t_summed,
                "per_entry_s": t_per_entry,
                "speed_up": t_per_entry / t_summed,
                "same_epsilon": same,
            }
        )
        print(
            f"{rounds:4d} rounds: summed {t_summed:.3f}s, one entry per round {t_per_entry:.3f}s "
            f"({t_per_entry / t_summed:.1f}x), same epsilon: {same}"
        )
    print(f"-> {write_result('accounting', {'rows': rows})}")


if __name__ == "__main__":
    main()
