"""Mutation testing of mpitrain's core with cosmic-ray, MPI tests included (``make mutation``).

Each module named in ``mutation.toml`` gets its own cosmic-ray session whose test command runs
that module's serial tests, then its MPI tests at every size of ``--sizes``, stopping at the
first failure. Mutants are applied to a copy of the work tree (``build/mutation/trees/MODULE``), never
to the sources you edit, and sessions persist, so an interrupted run resumes where it stopped.

    python scripts/mutation.py run [MODULE ...] [--sizes "2 3"] [--retest-survivors]
    python scripts/mutation.py report          # build/mutation/report.md and report.json
    python scripts/mutation.py test MODULE     # one mutant's tests (what cosmic-ray runs)
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

try:
    import tomllib
except ImportError:  # Python < 3.11: the same parser, installed with mpitrain
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "mutation"
MPICH_ENV = {  # more ranks than cores: yield instead of busy-polling (as in the Makefile)
    "MPIR_CVAR_CH4_PROGRESS_THROTTLE": "true",
    "MPIR_CVAR_POLLS_BEFORE_YIELD": "1",
    "HYDRA_LAUNCHER": "fork",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}
TEST_TIMEOUT = 60  # seconds for one test: a deadlocked mutant ends here
PYTEST = ["-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--timeout-method=thread"]


def load_config(root: Path = ROOT) -> dict:
    """The parsed ``mutation.toml`` of ``root``."""
    with open(root / "mutation.toml", "rb") as f:
        return tomllib.load(f)


def session_name(module: str) -> str:
    """A file name for ``module`` (a path under mpitrain/): data/partition.py -> data.partition."""
    return module[:-3].replace("/", ".")


def bin_path(name: str) -> str:
    """The executable ``name`` next to this Python (the virtual environment's)."""
    return str(Path(sys.executable).parent / name)


# -- test: what cosmic-ray runs for each mutant, inside the copy ---------------------------------


def run_tests(module: str, sizes: list[int]) -> int:
    """Run ``module``'s serial tests, then its MPI tests at each size; the first failing exit code, or 0."""
    target = load_config(Path.cwd())["targets"][module]
    timeout = int(target["timeout"])
    select = ["-k", target["select"]] if target.get("select") else []
    env = {**os.environ, **MPICH_ENV, "MPITRAIN_TEST_LOGS": str(Path.cwd() / "build" / "test-logs")}
    extra = {name: str(value) for name, value in target.get("env", {}).items()}  # for MPI runs, e.g. fake nodes
    if target["serial"]:
        code = subprocess.call([sys.executable, *PYTEST, f"--timeout={TEST_TIMEOUT}", "-m", "not mpi", *select, *target["serial"]],
                               env=env)
        if code:
            return code
    for n in sizes if target["mpi"] else []:
        mpiexec = os.environ.get("MPIEXEC", bin_path("mpiexec"))
        command = ["timeout", str(timeout), mpiexec, "-n", str(n), sys.executable, *PYTEST,
                   f"--timeout={TEST_TIMEOUT}", "--with-mpi", "-m", "mpi", *select, *target["mpi"]]
        code = subprocess.call(command, env={**env, **extra, "MPITRAIN_TEST_NP": str(n), "MPIEXEC_TIMEOUT": str(timeout)})
        if code:
            return code
    return 0


# -- run: copy the tree, make or resume one session per module, execute --------------------------


def tree_of(module: str) -> Path:
    """Where ``module``'s mutants are applied: a copy of the work tree of its own."""
    return WORK / "trees" / session_name(module)


def copy_tree(module: str) -> Path:
    """A fresh copy, for ``module``, of the tracked and untracked, not ignored, files of the work tree."""
    tree = tree_of(module)
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    if tree.exists():
        shutil.rmtree(tree)
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tree / name)
    return tree


def cosmic_config(module: str, target: dict, sizes: list[int], operators: list[str]) -> str:
    """The cosmic-ray configuration (TOML) of ``module``'s session."""
    from cosmic_ray.plugins import operator_names

    excluded = sorted(name for name in operator_names() if name not in set(operators))
    test = [sys.executable, "scripts/mutation.py", "test", module, "--sizes", ",".join(map(str, sizes))]  # in the copy
    lines = [
        "[cosmic-ray]",
        f'module-path = "mpitrain/{module}"',
        f"timeout = {float(target['timeout'])}",
        "excluded-modules = []",
        f"test-command = {json.dumps(' '.join(test))}",
        "[cosmic-ray.distributor]",
        'name = "local"',
        "[cosmic-ray.filters.operators-filter]",
        "exclude-operators = [" + ", ".join(json.dumps(f"^{name}$") for name in excluded) + "]",
    ]
    return "\n".join(lines) + "\n"


def prepare_session(module: str, target: dict, sizes: list[int], operators: list[str], tree: Path) -> Path:
    """Create ``module``'s session, or keep it if the module and the sizes are unchanged."""
    sessions = WORK / "sessions"
    sessions.mkdir(parents=True, exist_ok=True)
    name = session_name(module)
    config, db, stamp = sessions / f"{name}.toml", sessions / f"{name}.sqlite", sessions / f"{name}.stamp"
    config.write_text(cosmic_config(module, target, sizes, operators))
    what = [sizes, sorted(operators), target["timeout"]] + ([target["env"]] if target.get("env") else [])
    digest = hashlib.sha256((tree / "mpitrain" / module).read_bytes() + json.dumps(what).encode()).hexdigest()
    if db.exists() and stamp.exists() and stamp.read_text() == digest:
        return config
    db.unlink(missing_ok=True)
    subprocess.run([bin_path("cosmic-ray"), "init", str(config), str(db)], cwd=tree, check=True)
    subprocess.run([bin_path("cr-filter-operators"), str(db), str(config)], cwd=tree, check=True)
    stamp.write_text(digest)
    return config


def matches(entry: dict, module: str, operator: str, line: str, diff: Optional[str] = None) -> bool:
    """Whether an [[equivalent]] entry of mutation.toml covers this mutant.

    An entry names the module and the operator ("*": any) and the source line; with ``mutated`` it
    covers only the mutant whose changed line reads so (known once the mutant has run).
    """
    if entry["module"] not in ("*", module) or entry["line"] != line or entry.get("operator", "*") not in ("*", operator):
        return False
    if "mutated" not in entry:
        return True
    changed = [row[1:].strip() for row in (diff or "").splitlines() if row.startswith("+") and not row.startswith("+++")]
    return entry["mutated"] in changed


def skip_equivalents(db: Path, module: str, entries: list[dict]) -> int:
    """Mark pending mutants that mutation.toml declares equivalent as skipped; how many.

    Mutants skipped before whose declaration is gone or narrowed (to ``mutated``, which needs
    the mutant's diff) are pending again first, so that they run.
    """
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    mine = [e for e in entries if e["module"] in ("*", module)]
    count = 0
    with use_db(str(db), WorkDB.Mode.open) as work_db:
        results = dict(work_db.results)
        stale = []
        for item in work_db.work_items:
            result = results.get(item.job_id)
            if result is not None and result.worker_outcome == WorkerOutcome.SKIPPED and result.output == "equivalent":
                m = item.mutations[0]
                line = mutant_line(str(m.module_path), m.start_pos)
                if not any(matches(e, module, m.operator_name, line) for e in mine):
                    stale.append(item.job_id)
        _delete_results(work_db, stale)
        for item in list(work_db.pending_work_items):
            m = item.mutations[0]
            line = mutant_line(str(m.module_path), m.start_pos)
            if any(matches(e, module, m.operator_name, line) for e in mine):
                work_db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output="equivalent"))
                count += 1
    return count


def retest_survivors(db: Path) -> int:
    """Forget the results of surviving mutants so that ``exec`` runs them again; how many."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome

    with use_db(str(db), WorkDB.Mode.open) as work_db:
        survivors = [job for job, result in work_db.results if result.test_outcome == TestOutcome.SURVIVED]
        _delete_results(work_db, survivors)
    return len(survivors)


def _delete_results(work_db, job_ids: list[str]) -> None:
    """Delete the stored results of ``job_ids`` (cosmic-ray has no public call for it)."""
    from cosmic_ray.work_db import WorkResultStorage

    with work_db._session_maker.begin() as session:
        session.query(WorkResultStorage).filter(WorkResultStorage.job_id.in_(job_ids)).delete()


def run(modules: list[str], sizes: list[int], retest: bool) -> None:
    """Execute every pending mutant of ``modules`` (all targets when empty), then write the report."""
    config = load_config()
    modules = modules or list(config["targets"])
    unknown = [m for m in modules if m not in config["targets"]]
    if unknown:
        sys.exit(f"unknown module(s) {', '.join(unknown)}; mutation.toml names {', '.join(config['targets'])}")
    launcher = os.environ.get("MPIEXEC", bin_path("mpiexec"))
    if os.sep in launcher and not os.path.isabs(launcher):  # the Makefile's .venv/bin/mpiexec, from the copy
        os.environ["MPIEXEC"] = str(ROOT / launcher)
    for module in modules:
        tree = copy_tree(module)  # afresh for each module: tests added meanwhile take part
        cr_config = prepare_session(module, config["targets"][module], sizes, config["operators"]["keep"], tree)
        db = cr_config.with_suffix(".sqlite")
        if retest:
            print(f"{module}: {retest_survivors(db)} surviving mutants to test again", flush=True)
        skipped = skip_equivalents(db, module, config.get("equivalent", []))
        print(f"{module}: {skipped} mutants declared equivalent in mutation.toml are not run", flush=True)
        print(f"== {module}: baseline", flush=True)
        baseline = subprocess.call([sys.executable, "scripts/mutation.py", "test", module, "--sizes",
                                    ",".join(map(str, sizes))], cwd=tree)
        if baseline:
            print(f"{module}: SKIPPED, its tests fail without any mutant (exit {baseline}); fix them first",
                  flush=True)
            continue
        print(f"== {module}: mutants", flush=True)
        subprocess.run([bin_path("cosmic-ray"), "exec", str(cr_config), str(db)], cwd=tree, check=True)
        write_report(config)


# -- report ----------------------------------------------------------------------------------------


def mutant_line(module_path: str, start: tuple[int, int], diff: Optional[str] = None) -> str:
    """The stripped source line where a mutant starts: from its diff once it has run, else from the source."""
    removed = [row[1:].strip() for row in (diff or "").splitlines() if row.startswith("-") and not row.startswith("---")]
    if removed:
        return removed[0]
    source = ROOT / module_path  # not the copy, which holds a mutant while its session runs
    lines = source.read_text().splitlines()
    return lines[start[0] - 1].strip() if 0 < start[0] <= len(lines) else ""


def collect(config: dict) -> dict:
    """Per module: counts of killed, surviving, equivalent and pending mutants, and the survivors."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    entries = config.get("equivalent", [])
    out = {}
    for module in config["targets"]:
        db = WORK / "sessions" / f"{session_name(module)}.sqlite"
        if not db.exists():
            continue
        counts = {"killed": 0, "survived": 0, "equivalent": 0, "incompetent": 0, "pending": 0, "timeouts": 0}
        survivors, equivalents = [], []
        with use_db(str(db), WorkDB.Mode.open) as work_db:
            results = dict(work_db.results)
            for item in work_db.work_items:
                result = results.get(item.job_id)
                if result is not None and result.worker_outcome == WorkerOutcome.SKIPPED and result.output != "equivalent":
                    continue  # an operator mutation.toml leaves out
                mutation = item.mutations[0]
                diff = result.diff if result is not None else None
                line = mutant_line(str(mutation.module_path), mutation.start_pos, diff)
                where = {"line_no": mutation.start_pos[0], "operator": mutation.operator_name,
                         "occurrence": mutation.occurrence, "line": line}
                reason = next((e["reason"] for e in entries if matches(e, module, mutation.operator_name, line, diff)),
                              None)
                if result is not None and result.test_outcome != TestOutcome.KILLED and reason is not None:
                    counts["equivalent"] += 1
                    equivalents.append({**where, "reason": reason})
                elif result is None:
                    counts["pending"] += 1
                elif result.test_outcome == TestOutcome.INCOMPETENT:
                    counts["incompetent"] += 1
                elif result.test_outcome == TestOutcome.KILLED:
                    counts["killed"] += 1
                    counts["timeouts"] += result.output == "timeout"
                else:
                    counts["survived"] += 1
                    survivors.append({**where, "diff": result.diff})
        done = counts["killed"] + counts["survived"]
        out[module] = {**counts, "score": counts["killed"] / done if done else None,
                       "survivors": sorted(survivors, key=lambda s: s["line_no"]),
                       "equivalents": sorted(equivalents, key=lambda s: s["line_no"])}
    return out


def write_report(config: dict) -> Path:
    """Write build/mutation/report.json and report.md from the sessions; return the markdown path."""
    data = collect(config)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    (WORK / "report.json").write_text(json.dumps({"date": stamp, "modules": data}, indent=1))
    rows = ["| module | killed | survived | equivalent | pending | score |", "|---|---|---|---|---|---|"]
    total = {"killed": 0, "survived": 0}
    for module, d in data.items():
        score = "-" if d["score"] is None else f"{100 * d['score']:.1f}%"
        rows.append(f"| {module} | {d['killed']} | {d['survived']} | {d['equivalent']} | {d['pending']} | {score} |")
        total["killed"] += d["killed"]
        total["survived"] += d["survived"]
    done = total["killed"] + total["survived"]
    rows.append(f"| all | {total['killed']} | {total['survived']} | | | "
                f"{100 * total['killed'] / done:.1f}% |" if done else "| all | 0 | 0 | | | - |")
    text = [f"# Mutation report, {stamp}", "", *rows, "", "## Survivors", ""]
    for module, d in data.items():
        for s in d["survivors"]:
            text.append(f"- `{module}:{s['line_no']}` {s['operator']}: `{s['line']}`")
    text += ["", "## Equivalent", ""]
    for module, d in data.items():
        for s in d["equivalents"]:
            text.append(f"- `{module}:{s['line_no']}` {s['operator']} on `{s['line']}`: {s['reason']}")
    path = WORK / "report.md"
    path.write_text("\n".join(text) + "\n")
    print("\n".join(rows))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="execute pending mutants (all modules, or those named)")
    p_run.add_argument("modules", nargs="*")
    p_run.add_argument("--sizes", default="2,3", help="MPI world sizes, e.g. '2 3' or 2,3")
    p_run.add_argument("--retest-survivors", action="store_true", help="test surviving mutants again")
    sub.add_parser("report", help="write the report from the sessions")
    p_test = sub.add_parser("test", help="run one module's tests (inside the copy)")
    p_test.add_argument("module")
    p_test.add_argument("--sizes", default="2,3")
    args = parser.parse_args()
    if args.command == "report":
        write_report(load_config())
        return
    sizes = [int(s) for s in args.sizes.replace(",", " ").split()]
    if args.command == "test":
        sys.exit(run_tests(args.module, sizes))
    run(args.modules, sizes, args.retest_survivors)


if __name__ == "__main__":
    main()
