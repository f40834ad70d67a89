#!/bin/sh
# A guidance sweep of the seed experiment as a Slurm job array: one task per guidance scale,
# each on one GPU. Run it on a login node, from the repository, with results/ on a file system
# every node shares (the tasks train once through a lock file there). It prints the job id
# and, last, the sweep directory; the array's script is kept there as job.sbatch.
#
#   sh experiments/slurm/sweep_example.sh            # then, while it runs and when it is done:
#   build/runexp sweep status results/cfg_cifar/sweep-0001
set -eu
exec build/runexp experiments/cfg_cifar.yaml \
    --sweep guidance.scale=1,1.5,2,3,5,7.5 \
    --launcher slurm \
    --slurm "--partition=gpu --gres=gpu:1 --cpus-per-task=8 --mem=32G --time=12:00:00"
