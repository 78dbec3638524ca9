// train_config.cpp: command-line parsing for ./train.
#include "training/train_config.h"

#include <cstdlib>

#include "core/device.h"
#include "core/error.h"
#include "core/flags.h"

namespace iflame {

std::string TrainConfig::run_dir() const {
  std::string n = name;
  if (n.empty()) {
    std::string stem = dataset.substr(dataset.find_last_of('/') + 1);
    stem = stem.substr(0, stem.rfind('.'));
    std::string from = model;
    if (!init_from.empty()) {  // named after the weights it starts from
      from = init_from.substr(init_from.find_last_of('/') + 1);
      from = from.substr(0, from.rfind('.'));
    }
    n = stem + "-" + from;
  }
  return out_dir + "/" + n;
}

Device TrainConfig::resolved_device() const {
  Device d = device.empty() ? (cuda_available() ? Device::CUDA : Device::CPU)
                            : (device == "cuda" ? Device::CUDA : Device::CPU);
  if (d == Device::CUDA)
    IFLAME_CHECK(cuda_available(), "--device cuda: ", cuda_unavailable_reason(), " (--device cpu trains on the CPU)");
  return d;
}

DType TrainConfig::muon_ns_dtype(Device d) const {
  if (muon_ns.empty()) return d == Device::CUDA && resolved_matmul(d) == DType::BF16 ? DType::BF16 : DType::F32;
  return muon_ns == "bf16" ? DType::BF16 : DType::F32;
}

DType TrainConfig::resolved_matmul(Device d) const {
  if (precision.empty()) return d == Device::CUDA ? DType::BF16 : DType::F32;
  return precision == "f32" ? DType::F32 : DType::BF16;
}

ForwardContext TrainConfig::forward_context(Device d) const {
  ForwardContext ctx;
  ctx.matmul = resolved_matmul(d);
  // "bf16" (the GPU default) also keeps the blocks' inner tensors in bf16;
  // "bf16-matmul" rounds only the products' operands.
  // (The CPU reference has no bf16 tensors: there "bf16" emulates bf16 products only.)
  const bool bf16_inside = d == Device::CUDA && (precision.empty() || precision == "bf16");
  ctx.activations = bf16_inside ? DType::BF16 : DType::F32;
  ctx.ffn_align = d == Device::CUDA ? 8 : 1;  // aligned cuBLAS kernels for the 1365-wide FFN (spec §6)
  // The block count of --recompute ffn:K (the mode itself: resolved_recompute).
  if (!recompute.empty()) parse_recompute(recompute, &ctx.ffn_recompute_blocks);
  return ctx;
}

Recompute TrainConfig::resolved_recompute(Device d, const IFlameConfig& model) const {
  if (!recompute.empty()) return parse_recompute(recompute);
  // Default: ffn for the published width (d = 512) on the GPU, none otherwise.
  // At d = 512 and T = 6921 with bf16 block activations, keeping everything
  // takes an estimated 25.3 GiB peak at batch 16 (the reference's whole step:
  // 25.9 GiB) and 74 GiB at the published batch 48 (training/memory_model.h;
  // ./train --estimate-memory), before op temporaries: too close to both
  // limits. The feed-forward's three hidden-width tensors are most of it;
  // rebuilding them (ffn) brings the estimates to 16.4 and 47 GiB for one more
  // forward of the feed-forward products (about a fifth more arithmetic),
  // while blocks (6.6 and 18 GiB) runs every block's forward, attention
  // included, twice. Smaller models at their usual batches fit either way, and
  // the CPU has memory but little speed to spare: they keep everything.
  return d == Device::CUDA && model.dim >= 512 ? Recompute::Ffn : Recompute::None;
}

std::string train_usage() {
  return R"(usage: ./train DATASET.npy [flags]

Trains an iFlame mesh generator on a dataset made by tools (docs/data.md), with
the published recipe: Muon + AdamW, lr 1e-3 with 10% linear warm-up then cosine
to 1.28e-6, weight decay 0.1, gradient clipping at 1.0, bf16 matrix products
with f32 master weights on the GPU.

model and data
  --model NAME          shapenet (published, d=512, 75.7M params; needs a GPU),
                        small (d=256) or tiny (d=64)            [shapenet]
  --batch N             sequences per step                      [8]
  --max-faces N         meshes with more faces are skipped       [800]
  --bucket N            length bucketing over windows of N batches, so short
                        meshes are not padded to long ones (0: off) [0]
  --no-augment          train without the random scale/shift augmentation
  --loader-threads N    background tokenization threads         [4]
schedule
  --steps N             optimizer steps (0: --epochs worth)     [0]
  --epochs N            passes over the training split          [1]
  --lr X                peak learning rate                      [1e-3]
  --min-lr X            final learning rate of the cosine        [1.28e-6]
  --warmup X            fraction of steps of linear warm-up      [0.1]
  --weight-decay X      decoupled weight decay                   [0.1]
  --clip X              global gradient-norm clip                [1.0]
  --muon-ns P           Newton-Schulz of Muon in f32, or in bf16 as the reference
                        runs it (on the GPU's tensor cores)
                        [bf16 with bf16 products on the GPU, else f32]
precision and device
  --precision P         bf16: bf16 products (f32 sums) and bf16 tensors inside the
                        blocks, f32 residual stream; bf16-matmul: bf16 products only;
                        f32: everything f32      [bf16 on the GPU, f32 on the CPU]
  --device D            cuda or cpu                 [cuda when a GPU is usable]
  --recompute R         none: keep every activation backward needs; blocks:
                        keep only each transformer block's input and run the
                        block's forward again during backward (about a third
                        more compute, under a tenth of the activation memory
                        at d=512; see --estimate-memory); ffn: keep each
                        feed-forward's input only and run it again (its
                        hidden tensors are most of a block's memory);
                        ffn:K: the same in the K longest blocks only, the
                        others keeping everything (between none and ffn)
                                  [ffn for d=512 on the GPU, none otherwise]
  --force               train without estimating the step time first (on the
                        CPU ./train times two short steps, scales them to the
                        longest batch and stops, exit code 2, with the estimate
                        and a configuration that fits when one step would take
                        over a minute)
  --seed N              seeds initialisation, shuffling and augmentation [0]
output and checkpoints
  --out DIR             where runs go                            [runs]
  --name NAME           run folder name     [<dataset stem>-<model>]
  --val-interval N      validate every N steps (0: at the end)   [500]
  --val-batches N       batches per validation (0: whole split)  [20]
  --ckpt-interval N     checkpoint every N steps                 [1000]
  --log-interval N      steps between progress lines / log rows  [10]
  --render-samples N    at each validation, sample N meshes with the current
                        weights and draw them to RUN/samples/step-S.png (0: off)
                                                  [4 on a GPU, 0 on the CPU]
  --val-fraction X      share of meshes held out for validation when the dataset
                        records no validation split (a fixed, seed-independent
                        choice per mesh)                                [0.05]
  --resume FILE         continue a run from its checkpoint (exactly: same
                        batches, same random draws; the model comes from the
                        checkpoint, --model is ignored)
  --init-from FILE      start from the weights of a published .pth or a native
                        checkpoint (fresh optimizer and schedule)
  --max-bad-steps N     stop after N consecutive non-finite steps [5]
  --time-limit S        checkpoint and stop after S seconds of wall time (for
                        batch-system time limits; --resume continues)    [none]
  --quiet               no progress line, only the log file
benchmark (no dataset needed)
  --bench               time full training steps (forward, backward, clipping,
                        Muon + AdamW) of --model at --batch on random tokens:
                        step time, tokens/s, peak memory held by
                        tensors beside the memory model's estimate
  --bench-length T      tokens per sequence                       [6921]
  --bench-steps N       timed steps, after 2 warm-up steps        [10]
  --bench-kernels       time the attention kernels alone on the GPU (bf16,
                        B=16, H=16, D=32, T=--bench-length, median of
                        --bench-steps runs): causal softmax attention forward
                        and forward+backward (ms, TFLOP/s), decayed linear
                        attention forward and forward+backward (ms, GB/s);
                        then --model's optimizer step alone: Muon + AdamW,
                        and each Muon group with and without Newton-Schulz
  --profile             with --bench: also time every op of the timed steps
                        (CUDA events on the GPU, wall clock on the CPU) and
                        print a table: calls, time, share, TFLOP/s, GB/s and
                        time against the op's FLOP/byte floor on an H100
  --estimate-memory     print the memory model's estimate of a training step
                        of --model at --batch x --bench-length tokens, with
                        --recompute none and blocks, and exit (no GPU needed)
  -h, --help            this text
data parallel (one process per GPU; docs/distributed.md)
  --gpus N              start N processes on this machine, one per GPU; --batch
                        is per GPU, so the global batch is N x --batch
  --world-size N, --rank R
                        this process is rank R of N (launched by hand or by a
                        script; mpirun and srun are recognised by themselves)
  --local-rank L        GPU index on this machine    [from the launcher, or R]
  --rendezvous WHERE    how the ranks meet: FILE on a filesystem every rank sees,
                        or HOST:PORT of rank 0 [MASTER_ADDR:MASTER_PORT, MPI, or
                        under srun .iflame-rendezvous-<job>.<step>]
  --rendezvous-timeout S  seconds to wait for the other ranks       [300]
  --bucket-mb N         gradients are all-reduced in buckets of N MiB [64]

A run folder holds log.jsonl (every logged figure), last.ckpt (always the newest
checkpoint), step-N.ckpt at each interval and final.ckpt. Ctrl-C (SIGINT) or
SIGTERM saves a checkpoint and exits 0, within a second or two even in the
middle of a step (the unfinished step is dropped); --resume RUN/last.ckpt
continues. On the CPU only small configurations train at a useful pace
(--model tiny --max-faces 100 --batch 4: seconds a step); the published and
small models on full-length meshes need a GPU.
)";
}

namespace {
struct ArgReader {
  int argc;
  char** argv;
  int i = 1;
  std::string value(const std::string& flag) {
    IFLAME_CHECK(i + 1 < argc, "flag ", flag, " needs a value (see ./train --help)");
    return argv[++i];
  }
  int64_t integer(const std::string& flag, int64_t lo) {
    return flag_integer(flag, value(flag), lo, INT64_MAX);
  }
  float real(const std::string& flag, double lo) {
    double x = flag_number(flag, value(flag));
    if (x < lo) throw UsageError(str(flag, ": ", x, " is below the minimum ", lo));
    return static_cast<float>(x);
  }
};
}  // namespace

TrainConfig parse_train_args(int argc, char** argv, bool& help) {
  TrainConfig c;
  help = false;
  ArgReader r{argc, argv};
  for (; r.i < argc; r.i++) {
    std::string a = argv[r.i];
    if (a == "-h" || a == "--help") help = true;
    else if (a == "--model") c.model = r.value(a);
    else if (a == "--batch") c.batch_size = static_cast<int>(r.integer(a, 1));
    else if (a == "--max-faces") c.max_faces = static_cast<int>(r.integer(a, 1));
    else if (a == "--bucket") c.bucket_window = static_cast<int>(r.integer(a, 0));
    else if (a == "--no-augment") c.augment = false;
    else if (a == "--loader-threads") c.loader_threads = static_cast<int>(r.integer(a, 0));
    else if (a == "--steps") c.steps = r.integer(a, 0);
    else if (a == "--epochs") c.epochs = static_cast<int>(r.integer(a, 1));
    else if (a == "--lr") c.lr = r.real(a, 0);
    else if (a == "--min-lr") c.min_lr = r.real(a, 0);
    else if (a == "--warmup") c.warmup_fraction = r.real(a, 0);
    else if (a == "--weight-decay") c.weight_decay = r.real(a, 0);
    else if (a == "--clip") c.grad_clip = r.real(a, 0);
    else if (a == "--muon-ns") c.muon_ns = r.value(a);
    else if (a == "--precision") c.precision = r.value(a);
    else if (a == "--device") c.device = r.value(a);
    else if (a == "--recompute") c.recompute = r.value(a);
    else if (a == "--seed") c.seed = static_cast<uint64_t>(r.integer(a, 0));
    else if (a == "--out") c.out_dir = r.value(a);
    else if (a == "--name") c.name = r.value(a);
    else if (a == "--val-interval") c.val_interval = static_cast<int>(r.integer(a, 0));
    else if (a == "--val-batches") c.val_batches = static_cast<int>(r.integer(a, 0));
    else if (a == "--ckpt-interval") c.ckpt_interval = static_cast<int>(r.integer(a, 1));
    else if (a == "--log-interval") c.log_interval = static_cast<int>(r.integer(a, 1));
    else if (a == "--render-samples") c.render_samples = static_cast<int>(r.integer(a, 0));
    else if (a == "--val-fraction") c.val_fraction = r.real(a, 0);
    else if (a == "--resume") c.resume = r.value(a);
    else if (a == "--init-from") c.init_from = r.value(a);
    else if (a == "--max-bad-steps") c.max_bad_steps = static_cast<int>(r.integer(a, 1));
    else if (a == "--quiet") c.quiet = true;
    else if (a == "--force") c.force = true;
    else if (a == "--bench") c.bench = true;
    else if (a == "--bench-length") c.bench_length = static_cast<int>(r.integer(a, 9));
    else if (a == "--bench-steps") c.bench_steps = static_cast<int>(r.integer(a, 1));
    else if (a == "--bench-kernels") c.bench_kernels = true;
    else if (a == "--profile") c.profile = true;
    else if (a == "--estimate-memory") c.estimate_memory = true;
    else if (a == "--time-limit") c.time_limit_s = r.real(a, 0);
    else if (a == "--gpus") c.gpus = static_cast<int>(r.integer(a, 1));
    else if (a == "--rank") c.rank = static_cast<int>(r.integer(a, 0));
    else if (a == "--world-size") c.world_size = static_cast<int>(r.integer(a, 1));
    else if (a == "--local-rank") c.local_rank = static_cast<int>(r.integer(a, 0));
    else if (a == "--rendezvous") c.rendezvous = r.value(a);
    else if (a == "--rendezvous-timeout") c.rendezvous_timeout_s = r.real(a, 0.001);
    else if (a == "--bucket-mb") c.bucket_mb = static_cast<int>(r.integer(a, 1));
    else if (!a.empty() && a[0] == '-') IFLAME_FAIL("unknown flag ", a, " (see ./train --help)");
    else {
      IFLAME_CHECK(c.dataset.empty(), "more than one dataset given: ", c.dataset, " and ", a);
      c.dataset = a;
    }
  }
  if (help) return c;
  IFLAME_CHECK(c.bench || c.bench_kernels || c.estimate_memory || !c.dataset.empty(), "no dataset given (usage: ./train DATASET.npy [flags]; see --help)");
  IFLAME_CHECK(c.precision.empty() || c.precision == "bf16" || c.precision == "bf16-matmul" || c.precision == "f32",
               "--precision must be bf16, bf16-matmul or f32, not '", c.precision, "'");
  IFLAME_CHECK(c.muon_ns.empty() || c.muon_ns == "f32" || c.muon_ns == "bf16", "--muon-ns must be f32 or bf16, not '", c.muon_ns, "'");
  IFLAME_CHECK(c.device.empty() || c.device == "cuda" || c.device == "cpu",
               "--device must be cuda or cpu, not '", c.device, "'");
  if (!c.recompute.empty()) parse_recompute(c.recompute);  // throws on a bad name
  IFLAME_CHECK(c.render_samples <= 64, "--render-samples draws at most 64 meshes, not ", c.render_samples);
  IFLAME_CHECK(c.warmup_fraction <= 1, "--warmup is a fraction of the steps, at most 1");
  IFLAME_CHECK(c.val_fraction < 1, "--val-fraction must be below 1, not ", c.val_fraction);
  IFLAME_CHECK(c.resume.empty() || c.init_from.empty(), "--resume and --init-from exclude each other");
  IFLAME_CHECK((c.rank < 0) == (c.world_size == 0), "--rank and --world-size go together");
  IFLAME_CHECK(c.rank < c.world_size || c.rank < 0, "--rank ", c.rank, " is outside --world-size ", c.world_size);
  IFLAME_CHECK(c.gpus <= 1 || c.rank < 0, "--gpus starts its own ranks: leave out --rank and --world-size");
  IFLAME_CHECK(c.gpus <= 1 || c.device != "cpu", "--gpus needs --device cuda");
  IFLAME_CHECK(!c.profile || c.bench, "--profile goes with --bench");
  return c;
}

}  // namespace iflame
