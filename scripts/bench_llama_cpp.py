#!/usr/bin/env python3
"""llama.cpp (llama-cpp-python) on the same GGUF and the same workload as `pmg bench`:
prefill of a 128-token prompt and 128 greedy decode steps, median of N runs, peak RSS.
Prints one JSON object. Usage: bench_llama_cpp.py MODEL PROMPT_IDS_JSON THREADS RUNS"""
import json, resource, statistics, sys, time
import numpy as np
import llama_cpp

model, ids, threads, runs = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
llm = llama_cpp.Llama(model_path=model, n_ctx=512, n_batch=512, n_threads=threads, n_threads_batch=threads, verbose=False)
n_vocab = llm.n_vocab()
prefill, decode = [], []
for _ in range(runs):
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(ids)
    t1 = time.perf_counter()
    for _ in range(128):
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))
        llm.eval([int(np.argmax(logits))])
    t2 = time.perf_counter()
    prefill.append(len(ids) / (t1 - t0))
    decode.append(128 / (t2 - t1))
print(json.dumps({
    "system": f"llama.cpp via llama-cpp-python {llama_cpp.__version__}, {threads} threads",
    "prefill_tok_s": statistics.median(prefill),
    "decode_tok_s": statistics.median(decode),
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
