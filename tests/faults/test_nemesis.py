"""make test tier of the nemesis runs: three runs of RUN_SECONDS (default
35) each with a different seed (SEED to replay), of 3, 5 and 3 members
(MEMBERS=3,5,3); every checker must pass. `make soak SECONDS=N` runs
tests/faults/nemesis.py for N seconds."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nemesis  # noqa: E402

if __name__ == "__main__":
    run_s = int(os.environ.get("RUN_SECONDS", "35"))
    seed = int(os.environ["SEED"]) if "SEED" in os.environ else None
    sizes = [int(x) for x in os.environ.get("MEMBERS", "3,5,3").split(",")]
    sys.exit(nemesis.main(3 * (run_s + 30) + 30, run_s, max_runs=3, seed=seed, sizes=sizes))
