"""Lightning shells around the pure-PyTorch library: training and attack modules, callbacks."""
