"""Training for wav2lip-uhq: ``python -m train {synthetic,preprocess,cache,synccorrect,syncnet,wav2lip,eval}``.

Everything here builds on the models and the mel spectrogram of :mod:`wav2lip_uhq`, so the
checkpoints written by training load directly in the engine.
"""

FPS = 25  # training frame rate (80 mel columns / 25 frames = 3.2 columns per frame)
SYNC_T = 5  # frames per SyncNet window (0.2 s = 16 mel columns)
