"""Benchmark: the backup runner (pg_dump streamed into S3) against raw `pg_dump -Fc` to a local file.

    .venv/bin/python bench/backup.py --size 1GB

Brings up a PostgreSQL server and MinIO on loopback (devstack/), generates a vault database of at
least --size, then, in the same run, times raw `pg_dump -Fc -f <file>` and `python -m walwarden
runner backup` into MinIO, and measures the runner's peak memory. Prints a table; asserts nothing.
The aim (bench/README.md): runner/raw <= 1.05 and peak RSS <= 200 MiB, whatever the dump's size.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # devstack/ is scaffolding imported from the repository root

from devstack import vaultdb  # noqa: E402
from devstack.postgres import PostgresServer  # noqa: E402
from devstack.s3 import S3Server  # noqa: E402

MiB = 2**20
# vaultdb's size model undershoots: a 1 GiB target gives about 907 MiB. Ask for this much more.
GENERATOR_UNDERSHOOT = 1.15
POLL_SECONDS = 0.05
DATABASE = "vault"
BUCKET = "walwarden-bench"


@dataclass(frozen=True)
class Measurement:
    seconds: float
    peak_process_rss: int  # bytes: the largest peak of a single process (the runner itself)
    peak_tree_rss: int  # bytes: the sum of each process's own peak, the process and its children


def _children(pid: int) -> list[int]:
    children = []
    for listing in Path(f"/proc/{pid}/task").glob("*/children"):  # every thread's: any may start one
        try:
            children += [int(child) for child in listing.read_text().split()]
        except OSError:  # the thread or the process ended meanwhile
            pass
    return children


def _peak_rss(pid: int) -> int:
    """The process's own high-water mark (VmHWM): no peak is missed between two samples."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):  # kB
                    return int(line.split()[1]) * 1024
    except OSError:  # exited between the listing and the read
        pass
    return 0


def _sample_tree(pid: int, peaks: dict[int, int]) -> None:
    """Record the peak RSS of pid and of every process below it."""
    pending = [pid]
    while pending:
        current = pending.pop()
        peaks[current] = max(peaks.get(current, 0), _peak_rss(current))
        pending.extend(_children(current))


def measure(argv: list[str], env: dict[str, str], log: Path) -> Measurement:
    """Run argv to completion, timing it and watching its memory; its output goes to `log`."""
    with open(log, "wb") as output:
        started = time.perf_counter()
        process = subprocess.Popen(argv, env=env, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        # VmHWM, not getrusage/wait4's ru_maxrss: a child spawned with vfork inherits its parent's
        # high-water mark in ru_maxrss, so pg_dump would seem as big as the Python that started it.
        peaks: dict[int, int] = {}
        while process.poll() is None:
            _sample_tree(process.pid, peaks)
            time.sleep(POLL_SECONDS)
        seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({process.returncode}):\n" + log.read_text(errors="replace")[-3000:])
    # The tree's figure is an upper bound: each process's peak, as if they all happened at once.
    return Measurement(seconds, max(peaks.values(), default=0), sum(peaks.values()))


def generate(server: PostgresServer, size: int) -> None:
    print(f"generating a vault database of at least {size / MiB:,.0f} MiB (this takes a few minutes)", flush=True)
    server.create_database(DATABASE)
    vaultdb.generate(
        server.dsn(DATABASE),
        target_bytes=int(size * GENERATOR_UNDERSHOOT),
        progress=lambda line: print(f"  {line}", flush=True),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/backup.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size",
        type=vaultdb.parse_size,
        default=vaultdb.parse_size("1GB"),
        help="smallest database size to generate, e.g. 200MB or 1GB (default 1GB)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="raw/runner pairs, alternated so both see the same machine; medians are shown",
    )
    parser.add_argument("--workdir", type=Path, help="where the servers keep their data (default: a temp dir)")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="walwarden-bench-", dir=args.workdir))
    pg_dump = shutil.which("pg_dump")  # the one the runner finds on PATH: the same binary for both
    try:
        with PostgresServer(workdir / "postgres") as server, S3Server(workdir / "s3") as s3:
            generate(server, args.size)
            database_bytes = vaultdb.database_size(server.dsn(DATABASE))
            s3.create_bucket(BUCKET)
            env = {
                **server.client_env(DATABASE),
                "AWS_ACCESS_KEY_ID": s3.access_key,
                "AWS_SECRET_ACCESS_KEY": s3.secret_key,
                "WALWARDEN_RESULT_KEY": "bench",
                "WALWARDEN_EMP_0": "bench-emp",
            }
            raw, runner, dump_bytes = [], [], 0
            for round_ in range(1, args.rounds + 1):
                local = workdir / "raw.dump"
                print(f"round {round_}: raw pg_dump -Fc to a local file", flush=True)
                raw.append(measure([pg_dump, "-Fc", "-f", str(local)], env, workdir / "raw.log"))
                dump_bytes = local.stat().st_size
                local.unlink()
                print(f"round {round_}: walwarden runner backup to MinIO", flush=True)
                runner.append(
                    measure(
                        [
                            sys.executable,
                            "-m",
                            "walwarden",
                            "runner",
                            "backup",
                            "--database",
                            DATABASE,
                            "--bucket",
                            BUCKET,
                            "--prefix",
                            f"bench/round-{round_}",
                            "--endpoint",
                            s3.endpoint,
                            "--force-path-style",
                            "--emp",
                            "emp/password=WALWARDEN_EMP_0",
                        ],
                        env,
                        workdir / "runner.log",
                    )
                )
            report(args, database_bytes, dump_bytes, raw, runner)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def report(args, database_bytes: int, dump_bytes: int, raw: list[Measurement], runner: list[Measurement]) -> None:
    def median(values, attribute):
        return statistics.median(getattr(v, attribute) for v in values)

    shortfall = "" if database_bytes >= args.size else f"  (below the {args.size / MiB:,.0f} MiB asked for!)"
    print(f"\ndatabase  {database_bytes / MiB:,.1f} MiB (pg_database_size){shortfall}")
    print(
        f"dump      {dump_bytes / MiB:,.1f} MiB (custom format); {os.cpu_count()} CPUs shared by pg_dump, "
        f"PostgreSQL, the runner and MinIO (load average now {os.getloadavg()[0]:.1f}); "
        f"{args.rounds} round(s), medians\n"
    )
    print(f"{'':24}{'wall time':>11}{'dump rate':>13}{'peak RSS':>12}{'tree RSS':>12}")
    for label, runs in (("raw pg_dump -Fc > file", raw), ("runner -> MinIO", runner)):
        seconds = median(runs, "seconds")
        print(
            f"{label:24}{seconds:>10.1f}s{dump_bytes / MiB / seconds:>8.1f} MiB/s"
            f"{median(runs, 'peak_process_rss') / MiB:>8.0f} MiB{median(runs, 'peak_tree_rss') / MiB:>8.0f} MiB"
        )
    rounds = ", ".join(f"{r.seconds:.1f}s/{w.seconds:.1f}s" for r, w in zip(raw, runner, strict=False))
    print(f"\nper round (raw/runner)  {rounds}")
    ratio = median(runner, "seconds") / median(raw, "seconds")
    print(f"ratio runner/raw        {ratio:.3f}   (aim <= 1.05)")
    print(f"runner peak RSS         {median(runner, 'peak_tree_rss') / MiB:.0f} MiB with pg_dump (aim <= 200 MiB)")


if __name__ == "__main__":
    sys.exit(main())
