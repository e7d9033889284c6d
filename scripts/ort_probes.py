"""onnxruntime's own pieces of an LSTM, timed alone, for the bounds in README.md (Performance).

Needs the bench references (`pip install -r ../shared/bench/requirements.txt`).

`matmul M K N [COPIES]`: an ONNX MatMul of an `M x K` input by a `K x N` weight given as an
initializer (so onnxruntime prepacks it, as its LSTM does `R`), best and median of many calls;
with COPIES > 1 the graph multiplies by that many weights in turn, so that they come from
memory. Compare with the crate's `[M, K] x [K, N]` products.
    python scripts/ort_probes.py matmul 4 1024 4096        # lstm_h1024_b4's step product
    python scripts/ort_probes.py matmul 4 1024 4096 4      # ... with W from memory
    python scripts/ort_probes.py matmul 100 1024 4096      # ... and its input projection

`lstm H B T`: an ONNX LSTM (hidden = input = H, batch B, T steps), as `bench_ort.py` builds
it; several T give its cost per step:
    python scripts/ort_probes.py lstm 1024 4 25

The environment variable NT sets intra_op_num_threads (default 1).
"""

import os
import sys
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def session(graph):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8  # what onnxruntime 1.2x reads
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(os.environ.get("NT", "1"))
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def timed(s, feeds, outputs, reps):
    io = s.io_binding()
    for name, value in feeds.items():
        io.bind_cpu_input(name, value)
    for name, out in outputs.items():
        io.bind_output(name, "cpu", 0, np.float32, out.shape, out.ctypes.data)
    for _ in range(5):
        s.run_with_iobinding(io)
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        s.run_with_iobinding(io)
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[0], ts[len(ts) // 2]


def matmul(m, k, n, copies=1):
    rng = np.random.default_rng(0)
    nodes, outs, inits = [], [], []
    for c in range(copies):
        w = (rng.standard_normal((k, n)) * 0.01).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"W{c}"))
        nodes.append(helper.make_node("MatMul", ["A", f"W{c}"], [f"Y{c}"]))
        outs.append(helper.make_tensor_value_info(f"Y{c}", TensorProto.FLOAT, [m, n]))
    a_info = helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])
    s = session(helper.make_graph(nodes, "g", [a_info], outs, inits))
    a = rng.standard_normal((m, k)).astype(np.float32)
    ys = {f"Y{c}": np.empty((m, n), np.float32) for c in range(copies)}
    best, med = (t / copies for t in timed(s, {"A": a}, ys, max(20, 2000 // copies)))
    gf = 2 * m * k * n / best / 1e9
    print(f"onnxruntime MatMul {m}x{k}x{n} x{copies}: best {best * 1e6:.1f} us ({gf:.1f} GFLOP/s), median {med * 1e6:.1f} us")


def lstm(h, b, steps):
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((1, 4 * h, h)) * 0.02).astype(np.float32)
    r = (rng.standard_normal((1, 4 * h, h)) * 0.02).astype(np.float32)
    bias = np.zeros((1, 8 * h), np.float32)
    inits = [numpy_helper.from_array(v, name) for v, name in [(w, "W"), (r, "R"), (bias, "B")]]
    node = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y"], hidden_size=h)
    x_info = helper.make_tensor_value_info("X", TensorProto.FLOAT, [steps, b, h])
    y_info = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [steps, 1, b, h])
    s = session(helper.make_graph([node], "g", [x_info], [y_info], inits))
    x = rng.standard_normal((steps, b, h)).astype(np.float32)
    best, med = timed(s, {"X": x}, {"Y": np.empty((steps, 1, b, h), np.float32)}, 30)
    print(f"onnxruntime LSTM h{h} b{b} T{steps}: best {best * 1e3:.2f} ms, median {med * 1e3:.2f} ms")


if __name__ == "__main__":
    what, args = sys.argv[1], [int(v) for v in sys.argv[2:]]
    {"matmul": matmul, "lstm": lstm}[what](*args)
