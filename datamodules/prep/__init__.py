"""Real talking-head videos -> lipmem clip shards (`lipmem data prep`).

media (PyAV decoding to constant fps / 16 kHz mono) -> face_detect (pluggable detector) ->
tracking (keyframe detection, one steady square box per frame) -> clips (cut at lost faces)
-> job (one video, in a worker) -> splits (which split each clip goes to, interleaved
shards) -> build (resumable orchestration, shards, manifest, report) -> cli.
"""
