"""reactdiff-lite: learn, reproduce and extend ReactDiff (arXiv 2505.14151).

Given a speaker's audio-visual clip, generate several different but appropriate
listener facial reactions with latent diffusion.
"""

__version__ = "0.1.0"
