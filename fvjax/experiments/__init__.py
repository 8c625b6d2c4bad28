"""One function per experiment; the launch scripts and the notebooks call these."""
