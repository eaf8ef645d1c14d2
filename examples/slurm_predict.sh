#!/bin/bash
# Score a survey's cutouts with a committee of networks on several GPU nodes (Slurm + Lightning DDP).
#
# Each task is one process with one GPU; Lightning reads the ranks from Slurm's variables, so the same
# `lexactum predict` command runs on every task. The cube is cut into shards (--shard-size objects each) and
# shard s goes to rank s mod (tasks): every cutout is scored exactly once. Each rank writes its shards to
# OUT/shards/ as it finishes them; global rank 0 merges them into OUT/scores.csv, OUT/submission.txt and
# OUT/scores.parquet at the end. If the job is killed (time limit, preemption), submit the same script again:
# finished shards are kept and only the missing ones are scored. Changing the models or --tta between the
# two submissions is refused (use another OUT or --overwrite).
#
# Adapt: the account/partition lines, NODES x GPUS_PER_NODE, the paths, and --batch-size to your GPU memory.
# OUT must be on a file system that every node sees (the shards of all ranks are merged from there).
#
#SBATCH --job-name=lexactum-predict
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=4          # one task per GPU: must equal --devices below
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8            # DataLoader workers read and normalise the cutouts (--workers)
#SBATCH --mem-per-cpu=4G
#SBATCH --time=04:00:00
#SBATCH --signal=TERM@120            # a SIGTERM 2 minutes before the limit: lexactum stops cleanly (exit 143)

set -euo pipefail
NODES=${SLURM_JOB_NUM_NODES:-4}
GPUS_PER_NODE=4
CUBE=/scratch/$USER/survey/cutouts.h5      # datasets 'images' (N, C, 101, 101) and 'ids' (N,)
OUT=/scratch/$USER/survey/candidates

source "$HOME/lexactum/.venv/bin/activate"

# --kill-on-bad-exit ends every task when one fails (the others would wait for it in their next collective).
srun --kill-on-bad-exit=1 lexactum predict "$CUBE" \
    --model "$HOME/lexactum/models/space_lens_flow_50epochs.safetensors" \
    --model "$HOME/lexactum/models/space_lastro_epfl_50epochs.safetensors" \
    --tta 8 --combine mean \
    --out "$OUT" --parquet \
    --accelerator gpu --devices "$GPUS_PER_NODE" --num-nodes "$NODES" \
    --batch-size 1024 --workers 6

# Without Slurm, on one machine with 4 GPUs, the same run is
#   lexactum predict cutouts.h5 --model A --model B --tta 8 --out candidates --accelerator gpu --devices 4
# and under torchrun (one node):
#   torchrun --nproc-per-node 4 -m lexactum predict cutouts.h5 --model A --model B --out candidates \
#       --accelerator gpu --devices 4
