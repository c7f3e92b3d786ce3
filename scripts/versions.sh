# The libtorch version tch 0.26 is built for; sourced by the setup scripts.
TORCH_VERSION=2.13.0
