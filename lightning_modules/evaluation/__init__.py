"""`lipmem eval`: image, sync (LSE-D/LSE-C) and mouth metrics of a generator on a split.

One job per module: image_metrics (PSNR/SSIM/LPIPS), sync_scores (LSE with the sync
expert), mouth_metrics (openness estimate vs the ground-truth track, silent-frame closure),
fid (only with local Inception weights), report (eval.json + eval.md), runner (the loop),
cli (argparse).
"""
