"""Where audio comes from: recordings replayed as if live, the simulated hydrophone, sound
cards through PortAudio and networked hydrophones through ffmpeg.
"""
