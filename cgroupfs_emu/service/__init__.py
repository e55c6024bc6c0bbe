"""What the emulator learns from the host: processes and their file descriptors."""
