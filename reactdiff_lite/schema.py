"""REACT file conventions shared by the generator, the reader, models and metrics.

See ``data/README.md`` (the REACT layout): 25 fps clips of 751 frames (models use the first 750),
25 emotion columns (15 AUs, valence/arousal, 8 expression probabilities) and 58 3DMM
coefficients (52 expression, 3 rotation, 3 translation).
"""

FPS = 25
CLIP_FRAMES = 751  # frames in a REACT clip file
MODEL_FRAMES = 750  # frames models and metrics use: 751 -> 750, explicitly
AUDIO_RATE = 16_000  # model audio rate (Hz); real REACT audio is 44.1 kHz
SAMPLES_PER_FRAME = AUDIO_RATE // FPS  # 640

AU_NAMES = (
    "AU1",
    "AU2",
    "AU4",
    "AU6",
    "AU7",
    "AU9",
    "AU10",
    "AU12",
    "AU14",
    "AU15",
    "AU17",
    "AU23",
    "AU24",
    "AU25",
    "AU26",
)
VA_NAMES = ("valence", "arousal")
FE_NAMES = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")
EMOTION_NAMES = AU_NAMES + VA_NAMES + FE_NAMES
EMOTION_DIM = len(EMOTION_NAMES)  # 25

AU = slice(0, 15)
VA = slice(15, 17)
FE = slice(17, 25)

TDMM_DIM = 58
TDMM_EXP = slice(0, 52)
TDMM_ROT = slice(52, 55)  # pitch, yaw, roll
TDMM_TRANS = slice(55, 58)

SPLITS = ("train", "val", "test")
