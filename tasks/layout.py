"""GR00T's key layout for the GR1 robot: plain constants, importable without the simulator.

The 29-dim action (and the matching `state.*`) in GR00T's key order, where each part sits in robosuite's
flat action for `GR1ArmsAndWaistFourierHands` (from its composite controller's split indexes: right arm,
left arm, torso, right hand, left hand), and the observation keys.
"""

ACTION_KEYS = ("left_arm", "right_arm", "left_hand", "right_hand", "waist")
ACTION_DIMS = {"left_arm": 7, "right_arm": 7, "left_hand": 6, "right_hand": 6, "waist": 3}
ACTION_DIM = sum(ACTION_DIMS.values())
ROBOSUITE_SLICES = {
    "right_arm": slice(0, 7),
    "left_arm": slice(7, 14),
    "waist": slice(14, 17),
    "right_hand": slice(17, 23),
    "left_hand": slice(23, 29),
}
# The Fourier hand's 6 values (pinky, ring, middle, index, thumb bend, thumb rotation), radians.
HAND_RANGE = (0.0, 1.74)
VIDEO_KEY = "video.ego_view"
LANGUAGE_KEY = "annotation.human.coarse_action"
