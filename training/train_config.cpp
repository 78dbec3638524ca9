// train_config.cpp: command-line parsing for ./train.
#include "training/train_config.h"

#include <cstdlib>

#include "core/device.h"
#include "core/error.h"
#include "core/flags.h"

namespace iflame {

std::string TrainConfig::run_dir() const {
  if (name.empty() && !resume.empty()) {  // a resumed run continues in its checkpoint's folder
    const size_t slash = resume.find_last_of('/');
    return slash == std::string::npos ? "." : resume.substr(0, slash);
  }
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
  Device d = device.empty() ? (cuda_default_device() ? Device::CUDA : Device::CPU)
                            : (device == "cuda" ? Device::CUDA : Device::CPU);
  if (d == Device::CUDA)
    IFLAME_REQUIRE(cuda_available(), "--device cuda: ", cuda_unavailable_reason(), " (--device cpu trains on the CPU)");
  return d;
}

DType TrainConfig::muon_ns_dtype(Device d) const {
  if (muon_ns.empty()) return d == Device::CUDA && resolved_matmul(d) == DType::BF16 ? DType::BF16 : DType::F32;
  return muon_ns == "bf16" ? DType::BF16 : DType::F32;
}

DType TrainConfig::resolved_matmul(Device d) const { return precision_matmul(precision, d); }

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
  --precision P         )" + precision_help(24) + R"(
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
                        A new run never writes into a folder that holds a run:
                        with --name it refuses (use --resume), with the default
                        name it takes <name>-2, <name>-3, ... and says so
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
                        checkpoint, --model is ignored), in the checkpoint's
                        folder unless --name is given; log rows after the
                        checkpoint's step and stale .tmp files are removed
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

Recompute parse_recompute(const std::string& name, int* ffn_blocks) {
  if (ffn_blocks) *ffn_blocks = -1;
  if (name == "none") return Recompute::None;
  if (name == "blocks") return Recompute::Blocks;
  if (name == "ffn") return Recompute::Ffn;
  if (name.rfind("ffn:", 0) == 0) {
    const int k = static_cast<int>(flag_integer("--recompute ffn:K", name.substr(4), 0, 100000));
    if (ffn_blocks) *ffn_blocks = k;
    return Recompute::Ffn;
  }
  throw UsageError(str("--recompute: expected none, blocks, ffn or ffn:K, got '", name, "'"));
}

TrainConfig parse_train_args(int argc, char** argv, bool& help) {
  TrainConfig c;
  help = false;
  FlagReader f("train", argc, argv);
  std::vector<std::string> datasets;
  while (f.next()) {
    if (f.is_help()) help = true;
    else if (f.is("--model")) c.model = f.choice({"shapenet", "small", "tiny"});
    else if (f.is("--batch")) c.batch_size = f.integer<int>(1, 1 << 20);
    else if (f.is("--max-faces")) c.max_faces = f.integer<int>(1, 1 << 20);
    else if (f.is("--bucket")) c.bucket_window = f.integer<int>(0, 1 << 20);
    else if (f.is("--no-augment")) c.augment = false;
    else if (f.is("--loader-threads")) c.loader_threads = f.integer<int>(0, 1024);
    else if (f.is("--steps")) c.steps = f.integer<int64_t>(0, int64_t(1) << 40);
    else if (f.is("--epochs")) c.epochs = f.integer<int>(1, 1 << 24);
    else if (f.is("--lr")) c.lr = f.real<float>(0, 1e3);
    else if (f.is("--min-lr")) c.min_lr = f.real<float>(0, 1e3);
    else if (f.is("--warmup")) c.warmup_fraction = f.real<float>(0, 1);
    else if (f.is("--weight-decay")) c.weight_decay = f.real<float>(0, 1e3);
    else if (f.is("--clip")) c.grad_clip = f.real<float>(0, 1e9);
    else if (f.is("--muon-ns")) c.muon_ns = f.choice({"f32", "bf16"});
    else if (f.is("--precision")) c.precision = precision_flag(f);
    else if (f.is("--device")) c.device = f.choice({"cuda", "cpu"});
    else if (f.is("--recompute")) {
      c.recompute = f.text();
      parse_recompute(c.recompute);  // throws on a bad name
    } else if (f.is("--seed")) c.seed = f.integer<uint64_t>(0);
    else if (f.is("--out")) c.out_dir = f.text();
    else if (f.is("--name")) c.name = f.text();
    else if (f.is("--val-interval")) c.val_interval = f.integer<int>(0);
    else if (f.is("--val-batches")) c.val_batches = f.integer<int>(0);
    else if (f.is("--ckpt-interval")) c.ckpt_interval = f.integer<int>(1);
    else if (f.is("--log-interval")) c.log_interval = f.integer<int>(1);
    else if (f.is("--render-samples")) c.render_samples = f.integer<int>(0, 64);
    else if (f.is("--val-fraction")) c.val_fraction = f.real<float>(0, 0.999);
    else if (f.is("--resume")) c.resume = f.text();
    else if (f.is("--init-from")) c.init_from = f.text();
    else if (f.is("--max-bad-steps")) c.max_bad_steps = f.integer<int>(1);
    else if (f.is("--quiet")) c.quiet = true;
    else if (f.is("--force")) c.force = true;
    else if (f.is("--bench")) c.bench = true;
    else if (f.is("--bench-length")) c.bench_length = f.integer<int>(9, 1 << 24);
    else if (f.is("--bench-steps")) c.bench_steps = f.integer<int>(1, 1 << 20);
    else if (f.is("--bench-kernels")) c.bench_kernels = true;
    else if (f.is("--profile")) c.profile = true;
    else if (f.is("--estimate-memory")) c.estimate_memory = true;
    else if (f.is("--time-limit")) c.time_limit_s = f.real<double>(0, 1e9);
    else if (f.is("--gpus")) c.gpus = f.integer<int>(1, 1024);
    else if (f.is("--rank")) c.rank = f.integer<int>(0, 1 << 20);
    else if (f.is("--world-size")) c.world_size = f.integer<int>(1, 1 << 20);
    else if (f.is("--local-rank")) c.local_rank = f.integer<int>(0, 1024);
    else if (f.is("--rendezvous")) c.rendezvous = f.text();
    else if (f.is("--rendezvous-timeout")) c.rendezvous_timeout_s = f.real<double>(0.001, 1e9);
    else if (f.is("--bucket-mb")) c.bucket_mb = f.integer<int>(1, 1 << 16);
    else f.positional_or_unknown(datasets);
  }
  if (help) return c;
  auto require = [](bool ok, const std::string& what) {
    if (!ok) throw UsageError(what);
  };
  require(datasets.size() <= 1, str("more than one dataset given: ", datasets.size() > 1 ? datasets[0] : "", " and ",
                                    datasets.size() > 1 ? datasets[1] : ""));
  if (!datasets.empty()) c.dataset = datasets[0];
  require(c.bench || c.bench_kernels || c.estimate_memory || !c.dataset.empty(),
          "no dataset given (usage: ./train DATASET.npy [flags]; see --help)");
  require(c.resume.empty() || c.init_from.empty(), "--resume and --init-from exclude each other");
  require((c.rank < 0) == (c.world_size == 0), "--rank and --world-size go together");
  require(c.rank < c.world_size || c.rank < 0, str("--rank ", c.rank, " is outside --world-size ", c.world_size));
  require(c.gpus <= 1 || c.rank < 0, "--gpus starts its own ranks: leave out --rank and --world-size");
  require(c.gpus <= 1 || c.device != "cpu", "--gpus needs --device cuda");
  require(!c.profile || c.bench, "--profile goes with --bench");
  return c;
}

}  // namespace iflame
