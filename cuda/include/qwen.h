/*
 * qwen.h — the whole C ABI of libqwen (qwen-workbench's inference engine), version QW_ABI_VERSION (below).
 *
 * Two builds implement this header: libqwen_cpu.so (C++17 + OpenMP) and libqwen_cuda.so (nvcc).
 * The TypeScript side (engine/ffi.ts) loads one of them through bun:ffi.
 *
 * Rules that hold for every call:
 *  - Every function returns an int32 status (QW_OK = 0) unless documented otherwise. Nothing here exits,
 *    aborts or throws across the boundary; a failure sets a thread-local message read by qw_last_error().
 *  - Handles are opaque. Memory the engine keeps is allocated by the engine. Pointers passed in are only
 *    read (or written, for out-parameters) during the call; the engine never keeps a caller pointer.
 *  - Strings are NUL-terminated UTF-8. JSON out-calls follow the "copy into caller buffer" protocol:
 *    (out, cap, out_len) — the engine writes min(cap-1, len) bytes plus a NUL and stores the full length
 *    (without NUL) in *out_len; call once with cap = 0 to learn the size. Returns QW_OK even when truncated.
 *  - A session is used by one thread at a time (the caller serializes). Different sessions of one model
 *    may be used from different threads only on the CPU backend.
 *  - Tensor names are the GGUF (llama.cpp) names: token_embd.weight, output_norm.weight, output.weight,
 *    blk.N.{attn_norm,attn_q,attn_k,attn_v,attn_output,ffn_norm,ffn_gate,ffn_up,ffn_down}.weight and
 *    blk.N.attn_{q,k,v}.bias. Shapes use ggml order: ne0 is the contiguous (input) dimension, so an
 *    HF Linear weight [out, in] has ne0 = in, ne1 = out.
 */
#ifndef QWEN_H
#define QWEN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QW_ABI_VERSION 11

#if defined(__GNUC__)
#define QW_API __attribute__((visibility("default")))
#else
#define QW_API
#endif

/* ---------------------------------------------------------------------------------------------- */
/* Status codes                                                                                    */
/* ---------------------------------------------------------------------------------------------- */
enum qw_status {
  QW_OK = 0,
  QW_ERR_INVALID_ARGUMENT = 1, /* a null handle, a bad enum value, a bad option */
  QW_ERR_OUT_OF_MEMORY = 2,    /* host or device allocation failed */
  QW_ERR_NOT_FOUND = 3,        /* unknown tensor name, toggle id, hook name, sequence id */
  QW_ERR_SHAPE = 4,            /* tensor shape/type/size does not match the config */
  QW_ERR_UNSUPPORTED = 5,      /* valid request this backend does not implement (e.g. a toggle value) */
  QW_ERR_STATE = 6,            /* call out of order: load after finalize, session on unfinalized model */
  QW_ERR_CONTEXT_OVERFLOW = 7, /* the sequence would exceed the session's max context */
  QW_ERR_DEVICE = 8,           /* CUDA error: the message names statement, file, line and device */
  QW_ERR_INTERNAL = 9
};

/* GGML tensor type ids (same numbers as ggml). The engine accepts these in qw_model_load_tensor. */
enum qw_ggml_type {
  QW_GGML_F32 = 0,
  QW_GGML_F16 = 1,
  QW_GGML_Q4_0 = 2,
  QW_GGML_Q5_0 = 6,
  QW_GGML_Q8_0 = 8,
  QW_GGML_Q4_K = 12,
  QW_GGML_Q5_K = 13,
  QW_GGML_Q6_K = 14,
  QW_GGML_BF16 = 30
};

/* Op ids of the op records (docs/ARCHITECTURE.md §Measurement). qw_op_name() gives the string. */
enum qw_op {
  QW_OP_EMBED = 0,
  QW_OP_ATTN_NORM = 1,
  QW_OP_QKV = 2,        /* q/k/v projections incl. bias */
  QW_OP_ROPE = 3,
  QW_OP_ATTENTION = 4,  /* incl. the KV-cache write */
  QW_OP_O_PROJ = 5,
  QW_OP_RESIDUAL = 6,   /* one record per residual add; two per layer */
  QW_OP_FFN_NORM = 7,
  QW_OP_GATE_UP = 8,
  QW_OP_SWIGLU = 9,
  QW_OP_DOWN = 10,
  QW_OP_FINAL_NORM = 11,
  QW_OP_LM_HEAD = 12,
  QW_OP_SAMPLE = 13,
  QW_OP_FUSED = 14,     /* a fused op; the kernel variant name says what it fuses */
  QW_OP_GAP = 15,       /* profiling: time inside a step when none of our kernels (CUDA) or ops (CPU) ran:
                           launch latency, dependency bubbles, host work between ops */
  QW_OP_MEMCPY = 16,    /* profiling (kernels mode, CUDA): a host<->device copy of step parameters / results */
  QW_OP_POOL_WAKE = 17, /* profiling (CPU): waking the worker pool at the start of a step */
  QW_OP_ALL_REDUCE = 18, /* tensor parallelism (model option parallel = tp2..tp8, ABI 8): the sum of the ranks'
                            partials (embedding, after o_proj, after down) through NCCL; one record per rank */
  QW_OP_ALL_GATHER = 19, /* tensor parallelism: the lm_head's vocab slices of the logits gathered on every rank */
  QW_OP_COUNT = 20
};

/* Profiling modes of qw_session_set_profiling; qw_profiling_mode_name() gives the string. */
enum qw_profiling_mode {
  QW_PROFILING_OFF = 0,     /* no records; CUDA decode replays its graph */
  QW_PROFILING_EVENTS = 1,  /* CUDA: a cudaEvent pair around every op, ops launched eagerly (no graph): it changes
                               what it measures. CPU: host timestamps around every op (same as kernels). */
  QW_PROFILING_KERNELS = 2, /* CUDA: CUPTI activity records of every kernel and copy, the decode graph kept;
                               per-kernel start/end, gaps as QW_OP_GAP records. Needs libcupti at run time.
                               CPU: host timestamps around every op, gaps between ops and the pool wake-up as
                               their own records. */
  QW_PROFILING_COUNTERS = 3, /* CUDA (ABI 9): measured hardware counters per op through CUPTI's range profiler
                               (DRAM bytes read/written, L2 sector hits/misses, SM and tensor-pipe throughput):
                               ops launched eagerly as in events, every kernel replayed by CUPTI once per counter
                               pass, so op times include the replays (read times from another mode). Read them
                               with qw_session_read_counters. Needs libcupti; never with kernels mode in the same
                               process at once. CPU: refused (QW_ERR_UNSUPPORTED). */
  QW_PROFILING_COUNT = 4
};

enum qw_phase { QW_PHASE_PREFILL = 0, QW_PHASE_DECODE = 1 };

/* One op record: 72 bytes, no padding surprises (checked by a static assert in the engine). */
typedef struct qw_op_record {
  int64_t step;       /* session step counter: every prefill or decode call is one step */
  int32_t phase;      /* qw_phase */
  int32_t layer;      /* 0..n_layers-1, or -1 for ops outside the layers (embed, final_norm, lm_head, sample) */
  int32_t op;         /* qw_op */
  int32_t kernel;     /* kernel variant id; qw_kernel_name(kernel) gives the name */
  int64_t t_start_ns; /* monotonic ns (CPU: steady clock; CUDA: event time relative to the step's first event
                         plus the host time of that event's record) */
  int64_t t_end_ns;
  double flops;       /* analytic, from shapes */
  double bytes;       /* analytic: weights + activations + KV read and written */
  int32_t n_tokens;   /* rows processed by the op (prefill tokens, or decode batch) */
  int32_t overlap_ns; /* kernels mode: ns this kernel ran concurrently with the ones before it (programmatic
                         dependent launch lets a kernel start before its predecessor ends). t_start_ns is the
                         end of that overlap, so the records of a step tile its time without double counting. */
  int32_t rank;       /* tensor-parallel rank that ran the op (ABI 8): 0 at tp1; 0..N-1 at parallel = tpN */
  int32_t reserved;   /* 0 */
} qw_op_record;

/* Opaque handles. */
typedef struct qw_engine qw_engine;
typedef struct qw_model qw_model;
typedef struct qw_session qw_session;

/* ---------------------------------------------------------------------------------------------- */
/* Library                                                                                         */
/* ---------------------------------------------------------------------------------------------- */

/* Returns QW_ABI_VERSION of the library (not a status). */
QW_API int32_t qw_abi_version(void);

/* The last error of the calling thread, "" if none. Valid until the next failing call on this thread. */
QW_API const char *qw_last_error(void);

/* JSON: {"backend":"cpu"|"cuda","abi":QW_ABI_VERSION,"compiler":"...","flags":"...","built":"<date>"}. Static string. */
QW_API const char *qw_build_info(void);

/* The toggle registry (docs/ARCHITECTURE.md §How a toggle flows) as JSON: an array of
 * {"id","type":"enum","values":[...],"default","perLayer":bool,"needsReset":bool,
 *  "backends":{"cpu":[implemented values],"cuda":[implemented values]},"spec","description"}.
 * Static: the same for both libraries. */
QW_API int32_t qw_toggle_registry_json(char *out, uint64_t cap, uint64_t *out_len);

/* Every name the library defines, in one JSON document (the single source the TypeScript side and the page
 * read names from):
 * {"abi":N,
 *  "ops":[{"id":0,"name":"embed","cost":"<the op's FLOP/byte model in words>"},...]  (qw_op order),
 *  "hooks":{"perLayer":["hook_resid_pre","attn.hook_q",...] (after "blocks.{L}."),"global":["hook_logits","ln_final.hook_normalized"]},
 *  "profilingModes":[{"id":0,"name":"off"},...],
 *  "toggles":<the array of qw_toggle_registry_json>}.
 * Static: the same for both libraries. Added in ABI 3. */
QW_API int32_t qw_catalog_json(char *out, uint64_t cap, uint64_t *out_len);

/* Name of an op id ("embed", "attn_norm", ...); "" for an unknown id. Static string. */
QW_API const char *qw_op_name(int32_t op);

/* The clock of op records: std::chrono::steady_clock in ns (CLOCK_MONOTONIC on Linux). Callers time their own
 * work with it to put it on the records' time line. */
QW_API int64_t qw_clock_ns(void);

/* Name of a profiling mode (qw_profiling_mode: "off", "events", "kernels"); "" for an unknown one. Static. */
QW_API const char *qw_profiling_mode_name(int32_t mode);

/* Name of a kernel variant id used in op records; "" for an unknown id. Valid for the library's life. */
QW_API const char *qw_kernel_name(int32_t kernel);

/* ---------------------------------------------------------------------------------------------- */
/* Engine: one per process and device                                                              */
/* ---------------------------------------------------------------------------------------------- */

/* options_json (may be NULL or "{}"): {"threads": N (CPU; 0 = all cores), "device": N (CUDA ordinal)}.
 * The CUDA library fails with QW_ERR_DEVICE when there is no usable device. */
QW_API int32_t qw_engine_create(const char *options_json, qw_engine **out_engine);
QW_API int32_t qw_engine_destroy(qw_engine *engine);

/* JSON describing the device: {"backend","name","sms","clock_mhz","mem_clock_mhz","memory_bytes","driver",
 * "runtime","cc","threads"}; fields that do not apply are omitted. */
QW_API int32_t qw_engine_info_json(qw_engine *engine, char *out, uint64_t cap, uint64_t *out_len);

/* ---------------------------------------------------------------------------------------------- */
/* Model                                                                                           */
/* ---------------------------------------------------------------------------------------------- */

/* config_json uses the Hugging Face Qwen2Config names, all required except where noted:
 * {"vocab_size","hidden_size","intermediate_size","num_hidden_layers","num_attention_heads",
 *  "num_key_value_heads","head_dim" (optional: hidden/heads),"max_position_embeddings",
 *  "rope_theta","rms_norm_eps","tie_word_embeddings"}.
 * Validates the config (positive sizes, heads divide evenly, head_dim even, ...). */
QW_API int32_t qw_model_create(qw_engine *engine, const char *config_json, qw_model **out_model);

/* Hands one tensor over from host memory. data holds nbytes bytes in GGUF layout for ggml_type
 * (nbytes must equal the exact size implied by type and shape). The engine converts it at once to its own
 * layout (exactly: no extra rounding) and does not keep `data`. Unknown names, wrong shapes or types, and
 * duplicates fail with a message naming the tensor. n_dims is 1..4; unused ne are ignored. */
QW_API int32_t qw_model_load_tensor(qw_model *model, const char *name, int32_t ggml_type, int32_t n_dims,
                                    int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3, const void *data,
                                    uint64_t nbytes);

/* Validates that every tensor the config needs is present (output.weight only when not tied) and prepares
 * the model for sessions. After this, load_tensor fails with QW_ERR_STATE. */
QW_API int32_t qw_model_finalize(qw_model *model);

/* JSON: {"weight_bytes", "tensors":[{"name","ggml_type","native","ne":[...],"bytes"}...], "config":{...}}. */
QW_API int32_t qw_model_info_json(qw_model *model, char *out, uint64_t cap, uint64_t *out_len);

/* Destroying a model with live sessions fails with QW_ERR_STATE. */
QW_API int32_t qw_model_destroy(qw_model *model);

/* ---------------------------------------------------------------------------------------------- */
/* Session: a KV cache for up to max_batch sequences of up to max_context tokens, plus state           */
/* ---------------------------------------------------------------------------------------------- */

/* options_json: {"max_batch": B (default 1), "max_context": T (default min(4096, max_position_embeddings)),
 *                "max_prefill": P (largest single prefill chunk; default max_context),
 *                "dca_chunk_size": C, "dca_local_size": W (Dual Chunk Attention, toggle "dca": 0 <= W < C; default
 *                the config's dual_chunk_attention_config, else C = original_max_position_embeddings or
 *                max_position_embeddings, W = C / 8; giving only C makes W = C / 8)}.
 * The KV cache dtype is the toggle "kvCache" (default bf16); see qw_session_set_toggle. */
QW_API int32_t qw_session_create(qw_model *model, const char *options_json, qw_session **out_session);
QW_API int32_t qw_session_destroy(qw_session *session);

/* Sets toggle `id` to `value` (string form, e.g. "native", "on", "bf16") for one layer (0..L-1) or for all
 * layers (layer = -1). A toggle that is not perLayer accepts only -1. A value the backend does not
 * implement fails with QW_ERR_UNSUPPORTED and leaves the old value. Toggles marked needsReset (e.g.
 * kvCache) clear every sequence of the session. */
QW_API int32_t qw_session_set_toggle(qw_session *session, const char *id, const char *value, int32_t layer);

/* Current toggle values as JSON: {"<id>": "<value>" | ["<value of layer 0>", ...]} (an array when the
 * toggle differs between layers). */
QW_API int32_t qw_session_toggles_json(qw_session *session, char *out, uint64_t cap, uint64_t *out_len);

/* Session facts as JSON: {"maxBatch", "maxContext", "maxPrefill", "kvCache" (the cache type), "kvBytesPerToken"
 * (K+V of one token of one sequence over all layers, quantized steady state), "kvBytes" (allocated for the
 * whole session), "kvResidualTokens" (kivi: newest tokens kept in bf16, else 0), "kvMaxRollback" (tokens a
 * sequence can be cut back by exactly; -1 = any)}. */
QW_API int32_t qw_session_info_json(qw_session *session, char *out, uint64_t cap, uint64_t *out_len);

/* Toggle "tile" (ABI 7; src/opt/tile/tile.hpp). qw_session_info_json's "tile" member tells the backend's
 * candidates: {"device": {...}, "entries": N, "candidates": {"gemv": [{"name", "config"}], "gemm": [...]},
 * "fixed": {"gemv": name, "gemm": name}} (null where the backend cannot tune).
 * qw_session_tile_tune measures every candidate on every GEMV and GEMM shape of the model with random inputs on
 * this session's threads. request_json: {"reps" (3..50, default 5), "warmup" (0..10, 1), "repMs" (0.05..1000,
 * 2: the call is repeated to last this long per repetition), "gemmTokens" (8..4096, 64), "gemv" (true),
 * "gemm" (true), "only" (a shape key: just that shape), "dryRun" (false: true lists the shapes, without
 * "tokens", "inner" and "candidates", measuring nothing), "candidates" (names: measure fixed and these only)}. Answer: {"device", "request", "shapes": [{"key", "op",
 * "kind", "tokens", "cols", "rows": [...], "layers": [...], "inner", "candidates": [{"name", "config",
 * "samplesNs": [per repetition: ns per call], "maxAbsDiff", "bitwiseEqual", "withinBound"}]}]} (first candidate
 * = fixed; the others compared with its output). Blocks for as long as the measurement takes.
 * qw_session_tile_set sets the table tile = auto uses: {"<shape key>": "<candidate name>", ...} ("{}" clears);
 * an unknown kind or name is QW_ERR_INVALID_ARGUMENT and keeps the old table. */
QW_API int32_t qw_session_tile_tune(qw_session *session, const char *request_json, char *out, uint64_t cap,
                                    uint64_t *out_len);
QW_API int32_t qw_session_tile_set(qw_session *session, const char *table_json);

/* Clears sequence `seq` (0..max_batch-1), or all of them with seq = -1: length 0, sampler step 0. */
QW_API int32_t qw_session_reset(qw_session *session, int32_t seq);

/* Number of tokens in the KV cache of `seq`. */
QW_API int32_t qw_session_seq_len(qw_session *session, int32_t seq, int32_t *out_len);

/* Shortens sequence `seq` to its first new_len tokens (0 <= new_len <= its length; otherwise
 * QW_ERR_INVALID_ARGUMENT and nothing changes). The next prefill or decode continues at position new_len,
 * exactly as if the dropped tokens had never been there. Speculative decoding rolls back rejected draft tokens
 * with it. new_len = 0 is qw_session_reset(seq). A KV cache with a full-precision window (kvCache = kivi4 /
 * kivi2) can be cut exactly only by kvMaxRollback (qw_session_info_json) tokens below the longest length the
 * sequence reached since its reset (a little more, depending on that length); a deeper cut fails with
 * QW_ERR_UNSUPPORTED, saying the limit, and nothing changes. */
QW_API int32_t qw_session_truncate(qw_session *session, int32_t seq, int32_t new_len);

/* Sampling for `seq`: temperature <= 0 is greedy (argmax, lowest id wins ties); top_k <= 0 means no top-k;
 * top_p in (0, 1] (1 = off); seed makes the draw deterministic: the uniform number of a draw is a hash of
 * (seed, position of the sampled token), so a replay gives the same tokens on the same backend.
 * Fails with QW_ERR_INVALID_ARGUMENT for NaN/inf, top_p outside (0,1], temperature > 100. */
QW_API int32_t qw_session_set_sampling(qw_session *session, int32_t seq, float temperature, int32_t top_k,
                                       float top_p, uint64_t seed);

/* Appends n_tokens tokens to `seq` (which may already hold tokens: chunked prefill or a follow-up turn),
 * runs the forward pass, samples the next token from the last position's logits and writes it to
 * *out_token. Token ids must be in [0, vocab_size). Fails with QW_ERR_CONTEXT_OVERFLOW (nothing changed)
 * when the sequence would exceed max_context, and with QW_ERR_INVALID_ARGUMENT when n_tokens > max_prefill. */
QW_API int32_t qw_session_prefill(qw_session *session, int32_t seq, const int32_t *tokens, int32_t n_tokens,
                                  int32_t *out_token);

/* One batched decode step: appends tokens[i] to sequence seq_ids[i] for i < n (distinct ids, n <= max_batch),
 * runs one forward for all of them and writes each sequence's sampled next token to out_tokens[i].
 * This is the hot path: on CUDA it replays a captured graph unless profiling or graphs=off. */
QW_API int32_t qw_session_decode(qw_session *session, int32_t n, const int32_t *seq_ids, const int32_t *tokens,
                                 int32_t *out_tokens);

/* n_steps decode steps in one call (ABI 11): step 0 appends tokens[i] to seq_ids[i] as qw_session_decode does,
 * step j > 0 appends the tokens step j - 1 sampled; out_tokens[j * n + i] is the token sampled for sequence i at
 * step j (n_steps * n entries). The tokens, sequence lengths and sampling draws are those of n_steps
 * qw_session_decode calls fed with the previous outputs. On CUDA, with graphs on, no logits mode, no hook capture
 * and profiling off or kernels, the steps are queued back to back and the sampled tokens never leave the GPU
 * between them (one synchronization per call): the host's turnaround between steps, which bounds small models,
 * is hidden; elsewhere the library runs the n_steps steps one by one. A stop token is the caller's: cut the
 * sequence back with qw_session_truncate. Fails with QW_ERR_CONTEXT_OVERFLOW (nothing changed) where a sequence
 * would exceed max_context; 1 <= n_steps <= 4096. Logits and captures, when asked, are those of the last step. */
QW_API int32_t qw_session_decode_steps(qw_session *session, int32_t n, const int32_t *seq_ids, const int32_t *tokens,
                                       int32_t n_steps, int32_t *out_tokens);

/* A draft's chain verified as one decode step (ABI 10): appends tokens[0..n) to `seq` as n decode rows of that one
 * sequence at positions len..len+n-1 (row i attends to keys 0..len+i; n <= max_batch) and writes the token sampled
 * after each row to out_tokens[i] (logits modes 1 / 2: one row each). It runs the decode path (on CUDA the batched
 * decode graph), so row i's logits are those a plain decode step at that position gives, batch-invariantly; greedy
 * verification then matches non-speculative decoding token for token. QW_ERR_UNSUPPORTED names what the session's
 * toggles do not allow (a quantized kvCache, dca, decode = persistent, parallel != tp1): verify with
 * qw_session_prefill instead. */
QW_API int32_t qw_session_decode_chain(qw_session *session, int32_t seq, int32_t n, const int32_t *tokens,
                                       int32_t *out_tokens);

/* Speculative decoding with an EAGLE head (speculative = eagle; cuda/src/opt/speculative/). A prefill of n_tokens
 * rows of a TREE: parents holds first + n_tokens entries, parents[i] = the index of node i's parent (< i) or -1
 * (a root, attached to what the sequence held before node 0); the call appends nodes first .. first + n_tokens - 1
 * (the nodes before `first` were appended by earlier calls of the same tree, so a tree can be fed in chunks).
 * Node i is stored at KV position base + i, base = (length before the call) - first, gets RoPE position
 * base + depth(i), and attends to positions [0, base) and to its ancestors and itself only. parents = NULL is a
 * plain causal prefill (first must be 0). features: [n_tokens, hidden_size] fp32 rows, required for an EAGLE
 * head model (config "eagle_head": true; its input is fc([embed(token), feature])) and NULL for any other model.
 * Logits, captures and *out_token as qw_session_prefill. A backend or toggle arm without tree support fails
 * with QW_ERR_UNSUPPORTED (a quantized KV cache, DCA, a Sage attention arm). */
QW_API int32_t qw_session_prefill_tree(qw_session *session, int32_t seq, const int32_t *tokens, int32_t n_tokens,
                                       const int32_t *parents, int32_t first, const float *features,
                                       int32_t *out_token);

/* Keeps the accepted path of a verified tree: moves the K/V of positions base + keep[i] to base + i for
 * i < n (keep ascending, unique, base + keep[n-1] < length) and sets the length to base + n. */
QW_API int32_t qw_session_kv_compact(qw_session *session, int32_t seq, int32_t base, const int32_t *keep, int32_t n);

/* The k most likely tokens of every logits row of the last step (rows: qw_session_logits_shape) and their
 * log-softmax values (fp64, the softmax over the row's non-NaN logits), descending; ties: the lower id. out_ids
 * and out_logprobs hold rows x k entries (n >= rows * k); a row with fewer than k non-NaN logits pads with id -1
 * and -inf. EAGLE drafting and greedy tree verification read their proposals and argmaxes this way instead of
 * copying rows x vocab floats (k = 1 gives the greedy argmax of every row). Added in ABI 6. out_logprobs may be
 * NULL (libraries of ABI 9 built since 2026-12-05; older ones refuse it): the ids only, without the softmax pass
 * over the row (the greedy argmax costs one pass). */
QW_API int32_t qw_session_read_topk(qw_session *session, int32_t k, int32_t *out_ids, double *out_logprobs, int64_t n);

/* Logits readout. mode: 0 = none (default), 1 = the last position of each sequence of the step,
 * 2 = every position of a prefill (decode steps give one row per sequence, as in mode 1).
 * After a step, qw_session_logits_shape gives rows × vocab and qw_session_read_logits copies them (fp32). */
QW_API int32_t qw_session_set_logits_mode(qw_session *session, int32_t mode);
QW_API int32_t qw_session_logits_shape(qw_session *session, int32_t *out_rows, int32_t *out_vocab);
QW_API int32_t qw_session_read_logits(qw_session *session, float *out, int64_t n_floats);

/* Profiling: mode is a qw_profiling_mode. A mode the backend cannot run (kernels without libcupti) fails with
 * QW_ERR_UNSUPPORTED, saying why, and leaves the old mode. Records of every step accumulate in an engine
 * buffer (up to 4M records; older ones are dropped and counted) until read. In kernels mode the records of a
 * step are assembled from CUPTI's activity buffers when they are read (qw_session_records_pending or
 * qw_session_read_records), not during the step, so the step runs as it would unprofiled.
 * qw_session_read_records copies up to max records in order, removes them from the buffer and stores the
 * count in *out_n. */
QW_API int32_t qw_session_set_profiling(qw_session *session, int32_t mode);
QW_API int32_t qw_session_records_pending(qw_session *session, int64_t *out_n, int64_t *out_dropped);
QW_API int32_t qw_session_read_records(qw_session *session, qw_op_record *out, int64_t max, int64_t *out_n);
/* Counters mode's measurements (ABI 9), JSON in the copy-into-buffer protocol:
 * {"collected":[metric names],"unavailable":["metric X not available on this GPU: why",...],
 *  "ops":[{"step","phase","layer","op","nth","kernel","kernels","dramRead","dramWrite","l2Hits","l2Misses",
 *          "l2HitPct","durationNs","smPct","tensorPct"},...]}
 * one entry per op of every counters-mode step not read yet, in record order; nth numbers the occurrences of
 * (layer, op) within the step (the two residual adds), so an entry joins the op record of the same step, layer,
 * op and occurrence. Values a GPU does not offer are null. The entries are removed only when the whole document
 * fitted (cap > *out_len); call with cap = 0 to learn the size. Backends without counters give no entries. */
QW_API int32_t qw_session_read_counters(qw_session *session, char *out, uint64_t cap, uint64_t *out_len);

/* Activation capture at the hook points (docs/ARCHITECTURE.md §Hooks). `hooks` is a comma-separated list of names:
 * "blocks.{L}.hook_resid_pre", "blocks.{L}.attn.hook_q|hook_k|hook_v|hook_z", "blocks.{L}.hook_attn_out",
 * "blocks.{L}.hook_resid_mid", "blocks.{L}.mlp.hook_pre|hook_post", "blocks.{L}.hook_resid_post",
 * "hook_logits", "ln_final.hook_normalized" (the final-normed rows the lm_head reads: EAGLE's features; CPU
 * only), where {L} is a layer number or "*" (every layer). "" turns capture off. Unknown names fail
 * with QW_ERR_NOT_FOUND naming the hook. Each step replaces the captures of the previous one.
 * hook_q/k are after RoPE; hook_z is the attention output before o_proj; mlp.hook_pre is gate (pre-SiLU),
 * mlp.hook_post is silu(gate)*up. Captures are fp32 copies of what the engine computed: rows = tokens of the
 * step (prefill: every position of the sequence's new tokens; decode: one per sequence), cols = width. */
QW_API int32_t qw_session_set_capture(qw_session *session, const char *hooks);
QW_API int32_t qw_session_capture_count(qw_session *session, int32_t *out_n);
/* name_out receives the expanded hook name (e.g. "blocks.3.hook_resid_post"). */
QW_API int32_t qw_session_capture_info(qw_session *session, int32_t index, char *name_out, uint64_t name_cap,
                                       int32_t *out_rows, int32_t *out_cols);
QW_API int32_t qw_session_read_capture(qw_session *session, int32_t index, float *out, int64_t n_floats);

#ifdef __cplusplus
}
#endif

#endif /* QWEN_H */
