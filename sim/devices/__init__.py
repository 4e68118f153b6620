"""Virtual devices behind the real drivers: pty serial readers, door lines, keypoint cameras."""
