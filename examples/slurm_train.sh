#!/bin/bash
# Train a lens finder on several GPU nodes with Slurm: one task per GPU, Lightning's DDP over all of them.
#
#   sbatch examples/slurm_train.sh
#
# To adapt it: the #SBATCH lines (nodes, GPUs per node, time, and your cluster's partition and account),
# GPUS_PER_NODE (the same number as --ntasks-per-node and --gpus-per-node), the data folders, and the
# training options. lexactum checks that --devices x --num-nodes is the number of tasks srun started, and
# says so in one line before anything is trained. Needs lexactum installed where every node finds it, and
# folders (data, cache, runs, models) that every node sees.
#
#SBATCH --job-name=lexactum-train
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --output=%x-%j.out
##SBATCH --partition=gpu
##SBATCH --account=my-project

set -euo pipefail

# source ~/venvs/lexactum/bin/activate    # where lexactum is installed, if not on the PATH already

GPUS_PER_NODE=4
SURVEY=ground
DATA=$HOME/data/GroundBasedTraining
TEST_DATA=$HOME/data/GroundBasedTest
CACHE=$HOME/lexactum-cache
RUN_DIR=runs/slurm-$SLURM_JOB_ID

# 1. Prepare the normalised caches once, in one task: started on every task at once, each task would
#    prepare them itself. The training below then finds them ready.
srun --nodes=1 --ntasks=1 lexactum dataset prepare "$DATA" --survey "$SURVEY" --cache-dir "$CACHE"
srun --nodes=1 --ntasks=1 lexactum dataset prepare "$TEST_DATA" --survey "$SURVEY" --cache-dir "$CACHE"

# 2. Train on every task. Lightning reads each task's rank from Slurm. --batch-size is the global batch:
#    256 over 2 x 4 GPUs is 32 images per GPU and step (it must be a multiple of the GPUs). --run-dir is
#    needed: the tasks start at once and must agree on the run folder; with the job id it is unique, and
#    'lexactum train --resume runs/slurm-JOBID' continues it. Only rank 0 writes the run folder, the model
#    file (models/ unless --model-out) and the test evaluation. --kill-on-bad-exit ends every task when one
#    fails (the others would wait for it).
srun --kill-on-bad-exit=1 lexactum train \
    --dataset "$DATA" --test-dataset "$TEST_DATA" --survey "$SURVEY" --split 0.95,0.05 \
    --network cmu_deeplens --epochs 150 --batch-size 256 --patience 20 \
    --accelerator gpu --devices "$GPUS_PER_NODE" --num-nodes "$SLURM_NNODES" \
    --cache-dir "$CACHE" --run-dir "$RUN_DIR"

# Without Slurm (or without its srun), torchrun starts the processes instead: run on each of the N nodes
# (same command, HOST0 being the first node's name, JOB a name of your choice):
#
#   torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST0:29500 --rdzv-id JOB \
#       -m lexactum train --dataset ~/data/GroundBasedTraining --test-dataset ~/data/GroundBasedTest \
#       --survey ground --split 0.95,0.05 --network cmu_deeplens --epochs 150 --batch-size 256 \
#       --accelerator gpu --devices 4 --num-nodes 2 --run-dir runs/JOB
#
# On one machine no launcher is needed: 'lexactum train ... --devices 4' starts the other processes itself.
