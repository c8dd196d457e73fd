"""GradBench's protocol both ways, with no network: a driver here plays GradBench's eval against
``gradbench serve``, ``gradbench check`` judges ``serve`` itself and tools written here with one
fault each, and ``gradbench run`` pipes an eval written here to ``serve``. autograd serves
throughout (the fastest backend to start)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from harness import expected
from harness.cli.main import main
from harness.errors import ShapeMismatch
from harness.evals import ba, gmm, ht, llsq, lse, ode, particle, saddle
from harness.gradbench import problem_of, protocol
from harness.gradbench.serve import Server
from harness.validation.tolerances import tolerance

pytest.importorskip("autograd")

ROOT = Path(__file__).resolve().parents[2]
SERVE = f"{sys.executable} -m harness gradbench serve --backend autograd"


class Eval:
    """GradBench's side of a session: one message out, one line back, ids from 0."""

    def __init__(self, command: str, **kwargs) -> None:
        self.process = subprocess.Popen(
            command.split(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, **kwargs
        )
        self.next_id = 0
        self.lines: list[str] = []

    def send(self, kind: str, **fields) -> dict:
        message = {"id": self.next_id, "kind": kind} | fields
        self.next_id += 1
        return self.raw(json.dumps(message), message["id"])

    def raw(self, line: str, id) -> dict:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        self.lines.append(answer)
        response = json.loads(answer)
        assert response["id"] == id
        return response

    def close(self) -> str:
        self.process.stdin.close()
        rest = self.process.stdout.read()
        assert self.process.wait(timeout=60) == 0
        return rest


def test_serve_answers_gradbench_as_a_tool(tmp_path):
    log = tmp_path / "session.jsonl"
    session = Eval(f"{SERVE} --log {log}", stderr=subprocess.PIPE)
    started = session.send("start", eval="lse")
    assert started["config"]["backend"] == "autograd" and started["config"]["version"]
    assert session.send("define", module="lse")["success"] is True
    unknown = session.send("define", module="no-such-eval")
    assert unknown["success"] is False and "no eval 'no-such-eval'" in unknown["error"]

    x = np.random.default_rng(1).random(10)
    primal = session.send(
        "evaluate",
        module="lse",
        function="primal",
        input={"x": x.tolist(), "min_runs": 3, "min_seconds": 0.05},
    )
    runs = [t["nanoseconds"] for t in primal["timings"] if t["name"] == "evaluate"]
    assert len(runs) >= 3 and sum(runs) >= 0.05e9  # at least min_runs, and until min_seconds
    assert [t["name"] for t in primal["timings"]][:2] == ["prepare", "first-call"]
    assert primal["output"] == pytest.approx(lse.primal(np, x), rel=tolerance("float64", 0))

    gradient = session.send("evaluate", module="lse", function="gradient", input={"x": x.tolist()})
    assert np.allclose(gradient["output"], lse.softmax(x), rtol=1e-13, atol=0)
    assert list(session.send("analysis", of=gradient["id"], valid=False, error="a verdict")) == ["id"]

    ode_input = ode.gradbench_input((5, 1))
    row = session.send("evaluate", module="ode", function="gradient", input=ode_input)["output"]
    assert np.allclose(row, ode.jacobian(*ode.from_gradbench(ode_input))[-1], rtol=1e-13, atol=0)

    broken = session.send("evaluate", module="lse", function="hessian", input={"x": [1.0]})
    assert broken["success"] is False and "no function 'hessian'" in broken["error"]
    assert session.raw("{not json", None)["success"] is False
    assert session.close() == ""
    assert all(
        set(json.loads(line)) <= {"id", "tool", "config", "success", "error", "output", "timings"}
        for line in session.lines
    )
    kept = [json.loads(line) for line in log.read_text().splitlines()]
    analyses = [k["message"] for k in kept if k.get("message", {}).get("kind") == "analysis"]
    assert [(a["of"], a["valid"], a["error"]) for a in analyses] == [(gradient["id"], False, "a verdict")]
    assert "1 invalid" in session.process.stderr.read()


def test_serve_defines_only_what_the_backend_is_expected_to_do(registry):
    entry = registry.backends["autograd"]
    assert Server(entry).undefined("lse") is None
    assert "does not offer mode 'jit'" in Server(entry, mode="jit").undefined("lse")
    failing = expected.parse("lse reverse * float64 * fail # a known bug", "test.expected")
    listed = Server(type(entry)(entry.backend, entry.plugin, entry.version, None, failing))
    assert "test.expected:1" in listed.undefined("lse") and "a known bug" in listed.undefined("lse")
    assert listed.undefined("llsq") is None


def test_serve_answers_a_result_that_is_not_finite_with_a_failure(registry):
    server = Server(registry.backends["autograd"])
    huge = llsq.gradbench_input((16, 4)) | {"x": [1e200] * 4}  # the residuals' squares overflow
    answer = server.answer(
        {"id": 3, "kind": "evaluate", "module": "llsq", "function": "primal", "input": huge}
    )
    assert answer["success"] is False and "not finite" in answer["error"]
    protocol.dumps(answer)  # strict JSON: no bare NaN


@pytest.mark.parametrize("warmup, calls", [(True, 3), (False, 2)])
def test_serve_times_the_first_call_apart_unless_told_not_to(registry, warmup, calls):
    server = Server(registry.backends["autograd"], warmup=warmup)
    assert server.answer({"id": 0, "kind": "start"})["config"]["warmup"] is warmup
    x = [0.5, 1.5, -2.0]
    message = {"kind": "evaluate", "module": "lse", "function": "primal"}
    message["input"] = {"x": x, "min_runs": 2, "min_seconds": 0}
    server.answer(message | {"id": 1})
    ((key, compute),) = server.prepared.items()
    made = []
    server.prepared[key] = lambda *args: made.append(args) or compute(*args)
    answer = server.answer(message | {"id": 2})
    names = [t["name"] for t in answer["timings"]]
    assert names == ["prepare"] + ["first-call"] * warmup + ["evaluate", "evaluate"]
    assert len(made) == calls  # no untimed call where the first one is a run
    assert answer["output"] == pytest.approx(lse.primal(np, np.array(x)), rel=tolerance("float64", 0))


def test_the_first_define_warms_the_backend_once_and_a_failed_warm_up_is_the_answer(registry, monkeypatch):
    """As GradBench's PyTorch tool at import: one small gradient, no eval's function called."""
    backend = registry.backends["autograd"].backend
    calls = []
    real = backend.value_and_grad
    monkeypatch.setattr(backend, "value_and_grad", lambda f, argnums: calls.append(f) or real(f, argnums))
    server = Server(registry.backends["autograd"], warmup=False)
    for i, module in enumerate(("lse", "llsq", "nonesuch")):
        server.answer({"id": i, "kind": "define", "module": module})
    assert len(calls) == 1 and server.warmed and not server.prepared

    def broken(f, argnums):
        raise RuntimeError("no kernels")

    monkeypatch.setattr(backend, "value_and_grad", broken)
    answer = Server(registry.backends["autograd"]).answer({"id": 0, "kind": "define", "module": "lse"})
    assert answer["success"] is False and "warm-up" in answer["error"] and "no kernels" in answer["error"]


def check(tmp_path, tool: str, *extra: str) -> tuple[int, dict]:
    out = tmp_path / "report.json"
    code = main(["gradbench", "check", "--tool", tool, "--format", "json", "--output", str(out), *extra])
    return code, json.loads(out.read_text())


def test_check_judges_serve_itself_with_the_harness_oracles(tmp_path):
    code, report = check(tmp_path, SERVE, "-p", "lse,ode", "--size", "ode=6,2", "--min-runs", "2")
    assert code == 0
    checks = report["checks"]
    assert {c["oracle"] for c in checks} == {
        "numpy-float64",
        "closed-form",
        "complex-step",
        "central-difference",
    }
    assert all(c["status"] == "pass" and c["backend"] == "gradient-harness autograd" for c in checks)
    assert [(t["eval"], t["function"]) for t in report["timings"]] == [
        ("lse", "primal"),
        ("lse", "gradient"),
        ("ode", "primal"),
        ("ode", "gradient"),
    ]
    assert all(sum(t["name"] == "evaluate" for t in r["timings"]) >= 2 for r in report["timings"])


FAULTY = textwrap.dedent(
    """
    import json, math, sys, time
    fault = sys.argv[1]
    for line in sys.stdin:
        m = json.loads(line)
        r = {"id": m["id"]}
        if m["kind"] == "define":
            r["success"] = fault != "undefined"
        elif m["kind"] == "evaluate":
            x = m["input"]["x"]
            a = max(x)
            s = sum(math.exp(v - a) for v in x)
            out = math.log(s) + a if m["function"] == "primal" else [math.exp(v - a) / s for v in x]
            if m["function"] == "gradient":
                if fault == "wrong":
                    out[0] *= 1 + 1e-9
                elif fault == "shape":
                    out = out[:-1]
                elif fault == "nan":
                    out[2] = float("nan")
                elif fault == "crash":
                    sys.exit("crashed on purpose")
                elif fault == "hang":
                    time.sleep(600)
                elif fault == "order":
                    r["id"] += 1
                elif fault == "refuse":
                    print("no gradient here", file=sys.stderr)
                    r |= {"success": False, "error": "not implemented"}
            r.setdefault("success", True)
            if r["success"]:
                r |= {"output": out, "timings": [{"name": "evaluate", "nanoseconds": 1000}]}
        print(json.dumps(r), flush=True)
    """
)


@pytest.mark.parametrize(
    ("fault", "status", "classification", "words"),
    [
        ("wrong", "fail", "wrong derivative", ""),
        ("shape", "error", "wrong shape", "expected an array of shape 32, got a list of 31"),
        ("nan", "fail", "overflow/nan", "wrote NaN"),
        ("crash", "error", "crash", "crashed on purpose"),
        ("hang", "error", "timeout", "process group was killed"),
        ("order", "error", "protocol", "out of order"),
        ("refuse", "error", "exception", "not implemented"),
        ("undefined", "unsupported", None, "undefined"),
    ],
)
def test_check_classifies_a_faulty_tool(tmp_path, fault, status, classification, words):
    script = tmp_path / "tool.py"
    script.write_text(FAULTY)
    timeout = ["--timeout", "2"] if fault == "hang" else []
    code, report = check(tmp_path, f"{sys.executable} {script} {fault}", "-p", "lse", *timeout)
    checks = report["checks"]
    if fault != "hang":  # under load even the start may be what times out
        assert (
            checks[0]["oracle"] == "numpy-float64" and checks[0]["status"] == "pass" or fault == "undefined"
        )
    last = next((c for c in checks if c["status"] != "pass"), checks[-1])
    assert (last["status"], last["classification"]) == (status, classification)
    assert words in last["message"]
    assert code == (0 if fault == "undefined" else 1)
    if fault == "wrong":  # GradBench's 1e-4 would let a 1e-9 relative error through
        assert last["max_rel_err"] == pytest.approx(1e-9, rel=1e-3)


def test_check_refuses_an_unknown_eval_and_a_stray_size(tmp_path, capsys):
    assert main(["gradbench", "check", "--tool", SERVE, "-p", "kmeans-x"]) == 2
    assert main(["gradbench", "check", "--tool", SERVE, "-p", "lse", "--size", "det=3"]) == 2
    assert "not among the evals sent" in capsys.readouterr().err


EVAL = textwrap.dedent(
    """
    import json, sys
    def ask(message):
        print(json.dumps(message), flush=True)
        return json.loads(sys.stdin.readline())
    ask({"id": 0, "kind": "start", "eval": "lse"})
    assert ask({"id": 1, "kind": "define", "module": "lse"})["success"]
    x = [0.5, 0.25, 1.0]
    runs = {"min_runs": 1, "min_seconds": 0}
    r = ask({"id": 2, "kind": "evaluate", "module": "lse", "function": "gradient", "input": {"x": x} | runs})
    valid = abs(sum(r["output"]) - 1) < 1e-12 and sys.argv[1] == "fair"
    ask({"id": 3, "kind": "analysis", "of": 2, "valid": valid})
    """
)


@pytest.mark.parametrize(("verdict", "code", "flags"), [("fair", 0, ""), ("strict", 4, " --no-warmup")])
def test_run_pipes_an_eval_to_serve_as_gradbench_run_does(tmp_path, verdict, code, flags):
    script = tmp_path / "eval.py"
    script.write_text(EVAL)
    log = tmp_path / "log.jsonl"
    assert (
        main(
            [
                "gradbench",
                "run",
                "--eval",
                f"{sys.executable} {script} {verdict}",
                "--tool",
                SERVE + flags,
                "-o",
                str(log),
            ]
        )
        == code
    )
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [next(iter(set(line) - {"elapsed"})) for line in lines] == ["message", "response"] * 4
    timed = [t["name"] for t in lines[5]["response"]["timings"]]
    assert ("first-call" in timed) is not flags and timed.count("evaluate") >= 1


NOISY = textwrap.dedent(
    """
    import os, sys, warnings
    from harness_backends.autograd import AutogradBackend
    from harness import hookimpl, plugins
    from harness.gradbench.serve import serve

    class Noisy(AutogradBackend):
        name = "noisy"

        def value_and_grad(self, f, argnums):
            print("a framework's print")
            os.write(1, b"a C library's write to fd 1\\n")
            warnings.warn("a framework's warning")
            return super().value_and_grad(f, argnums)

    class Plugin:
        @hookimpl
        def harness_register_backends(register):
            register(Noisy())

    (entry,) = plugins.load(extra=[("noisy", Plugin)]).select_backends(["noisy"])
    sys.exit(serve(entry, "eager", "cpu"))
    """
)


def test_serve_keeps_stdout_to_protocol_lines_when_the_framework_prints(tmp_path):
    script = tmp_path / "noisy.py"
    script.write_text(NOISY)
    session = Eval(
        f"{sys.executable} {script}", stderr=subprocess.PIPE, env=os.environ | {"PYTHONPATH": str(ROOT)}
    )
    assert session.send("define", module="lse")["success"] is True
    answer = session.send("evaluate", module="lse", function="gradient", input={"x": [0.5, 1.5]})
    assert answer["success"] is True and np.allclose(answer["output"], lse.softmax(np.array([0.5, 1.5])))
    assert session.close() == ""
    noise = session.process.stderr.read()
    assert "a framework's print" in noise and "fd 1" in noise and "a framework's warning" in noise


def test_check_judges_serve_on_the_nested_evals(tmp_path, monkeypatch):
    # Starts beside the answers, so each descent stops at once (GradBench's own, w = 0 and (1, 1),
    # take minutes per pair); particle's pairs cost seconds each on autograd, so one is sent.
    monkeypatch.setattr(particle, "gradbench_input", lambda size=None: {"w": 0.207})
    monkeypatch.setattr(saddle, "gradbench_input", lambda size=None: {"start": [0.01, 0.01]})
    monkeypatch.setattr(particle, "GRADBENCH", {"fr": particle.GRADBENCH["fr"]})
    code, report = check(tmp_path, SERVE, "-p", "particle,saddle")
    assert code == 0
    assert [(c["problem"], c["strategy"], c["oracle"], c["status"]) for c in report["checks"]] == [
        ("particle", "fr", "reference-descent", "pass")
    ] + [("saddle", pair, "reference-descent", "pass") for pair in ("rr", "ff", "fr", "rf")]
    assert all(c["max_rel_err"] == 0 for c in report["checks"])  # the same descent, the same stop


def test_the_nested_evals_are_judged_against_gradbench_at_its_input():
    function = saddle.GRADBENCH["rr"]
    oracles = function.oracles(problem_of(saddle), saddle.from_gradbench(saddle.gradbench_input()))
    assert [o.name for o in oracles] == ["reference-descent", "gradbench"]
    assert np.array_equal(oracles[1].reference, saddle.EXPECTED)
    assert function.output(saddle.EXPECTED) == list(saddle.EXPECTED)
    assert particle.GRADBENCH["rf"].output((0.25,)) == 0.25  # a number, as GradBench's particle


@pytest.mark.on_installed
def test_the_nested_evals_are_defined_in_a_compiled_mode(registry):
    """Their units of work compile (`NestedProblem.units`); the descents stay in Python."""
    compiling = [e for e in registry.backends.values() if e.unavailable is None and "jit" in e.backend.modes]
    if not compiling:
        pytest.skip("no installed backend compiles (jax, torch or tensorflow)")
    assert Server(compiling[0], mode="jit").undefined("particle") is None


def test_check_judges_serve_on_the_evals_with_outputs_of_their_own_shape(tmp_path):
    code, report = check(tmp_path, SERVE, "-p", "kmeans,gmm,lstm,ba", "--size", "ba=2,3,12")
    assert code == 0
    judged = {(c["problem"], c["strategy"]) for c in report["checks"] if c["status"] == "pass"}
    assert judged == {
        ("kmeans", "cost"),
        ("kmeans", "dir"),
        ("gmm", "objective"),
        ("gmm", "jacobian"),
        ("lstm", "objective"),
        ("lstm", "jacobian"),
        ("ba", "objective"),
        ("ba", "jacobian"),
    }
    assert all(c["status"] == "pass" for c in report["checks"])


def test_serve_answers_ba_at_gradbench_smallest_file_on_each_backend(entry, tmp_path):
    """ba1's 31843 observations by their indices (the dense problem's one-hot selections would
    be 2 GB), the compressed rows host numpy on every backend."""
    tool = f"{sys.executable} -m harness gradbench serve --backend {entry.name}"
    code, report = check(tmp_path, tool, "-p", "ba", "--size", "ba=49,7776,31843")
    assert code == 0 and [c["status"] for c in report["checks"]] == ["pass", "pass"], report["checks"]


def test_the_outputs_of_their_own_shape_are_read_back_or_refused(registry):
    server = Server(registry.backends["autograd"])
    input = gmm.gradbench_input((2, 3, 4))
    jacobian = server.evaluate("gmm", "jacobian", input)["output"]
    shape = (3 + 6 + 6 + 3,)
    assert gmm.parse_jacobian(jacobian, shape).shape == shape
    with pytest.raises(ShapeMismatch, match="mu: expected an array of shape 3 x 2"):
        gmm.parse_jacobian(jacobian | {"mu": jacobian["mu"][:2]}, shape)
    with pytest.raises(ShapeMismatch, match="a dict of alpha, mu, q, l"):
        gmm.parse_jacobian({"alpha": jacobian["alpha"]}, shape)
    objective = server.evaluate("ba", "objective", ba.gradbench_input((2, 3, 5)))["output"]
    assert objective["reproj_error"]["repeated"] == objective["w_err"]["repeated"] == 5
    assert objective["w_err"]["element"] == pytest.approx(1 - ba.ONE["w"] ** 2, rel=1e-15)


def test_serve_and_check_leave_ht_alone_without_its_data(tmp_path, registry, monkeypatch):
    monkeypatch.delenv(ht.VARIABLE, raising=False)
    assert ht.VARIABLE in Server(registry.backends["autograd"]).undefined("ht")
    code, report = check(tmp_path, f"{sys.executable} -c pass", "-p", "ht")
    assert code == 0 and [c["status"] for c in report["checks"]] == ["unsupported"]
    assert ht.VARIABLE in report["checks"][0]["message"]


def test_ht_complicated_jacobian_keeps_each_points_own_us_columns_then_thetas():
    J = np.arange(6 * (ht.THETA + 4), dtype=float).reshape(6, ht.THETA + 4)  # 2 points
    out = np.array(ht.GRADBENCH["jacobian"].output(tuple(J.T)))
    assert out.shape == (6, 2 + ht.THETA)
    assert np.array_equal(out[:3, :2], J[:3, ht.THETA : ht.THETA + 2])
    assert np.array_equal(out[3:, :2], J[3:, ht.THETA + 2 :])
    assert np.array_equal(out[:, 2:], J[:, : ht.THETA])
    simple = J[:, : ht.THETA]
    assert np.array_equal(ht.GRADBENCH["jacobian"].output(tuple(simple.T)), simple)


RACER = textwrap.dedent(
    """
    import json, math, os, sys
    ns, skew = int(sys.argv[1]), float(sys.argv[2])  # its own evaluate timings; how wrong it is
    for line in sys.stdin:
        m = json.loads(line)
        r = {"id": m["id"]}
        if m["kind"] == "start":
            r["tool"] = f"racer{ns} on {sorted(os.sched_getaffinity(0))}"
        elif m["kind"] == "define":
            r["success"] = True
        elif m["kind"] == "evaluate":
            x = m["input"]["x"]
            e = [math.exp(v) for v in x]
            output = [skew * v / sum(e) for v in e]
            timings = [{"name": "evaluate", "nanoseconds": ns * k} for k in (3, 1, 2)]
            r |= {"success": True, "output": output, "timings": timings}
        print(json.dumps(r), flush=True)
    """
)


def test_an_eval_that_crashes_is_an_error_not_a_success(tmp_path, capsys):
    """An eval program that exits non-zero before its first message (a missing module, say)."""
    (tmp_path / "racer.py").write_text(RACER)
    tool = f"{sys.executable} {tmp_path / 'racer.py'} 1000 1"
    crash = f"{sys.executable} -c 'import sys; sys.exit(3)'"
    assert main(["gradbench", "run", "--eval", crash, "--tool", tool]) == 1
    assert "error: 0 evaluations" in capsys.readouterr().err


def test_race_runs_each_tool_in_turn_and_sets_their_costs_side_by_side(tmp_path, capsys):
    """Two rounds, alternating (A B, then B A), both tools pinned to one CPU; per tool and function
    GradBench's verdicts and the medians of the per-session sums, over the first tool's."""
    (tmp_path / "eval.py").write_text(EVAL)
    (tmp_path / "racer.py").write_text(RACER)
    fast, slow = (f"{sys.executable} {tmp_path / 'racer.py'} {ns}" for ns in ("1000 1", "4000 1.5"))
    out = tmp_path / "race.json"
    cpu = min(os.sched_getaffinity(0))
    argv = ["gradbench", "race", "--eval", f"{sys.executable} {tmp_path / 'eval.py'} fair", "--rounds", "2"]
    assert main([*argv, "--tool", fast, "--tool", slow, "--cpus", str(cpu), "--output", str(out)]) == 4
    race = json.loads(out.read_text())
    assert [s["tool"] for s in race["sessions"]] == [fast, slow, slow, fast]
    a, b = race["summary"]
    assert (a["name"], b["name"]) == (f"racer1000 on [{cpu}]", f"racer4000 on [{cpu}]")
    assert (a["valid"], a["evaluations"], b["valid"], b["evaluations"]) == (2, 2, 0, 2)
    assert (a["first"], a["fastest"], b["fastest_ratio"], b["first_ratio"]) == (3e-6, 1e-6, 4.0, 4.0)
    assert a["round_trip_ratio"] == 1.0 and b["round_trip"] > 0
    table = capsys.readouterr().out
    assert f"#2 racer4000 on [{cpu}]" in table and "(4.00x)" in table and "0/2" in table
    assert f"#1: {fast}" in table
    with pytest.raises(SystemExit, match="2"):
        main([*argv, "--tool", fast, "--cpus", "99999"])
    assert "give CPU numbers this process may use" in capsys.readouterr().err
