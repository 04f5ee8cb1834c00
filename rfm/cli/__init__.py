"""The `rfm` command line (click). Heavy imports happen inside commands, so --help stays fast."""
