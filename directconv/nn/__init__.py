"""The public API: convolutions on NCHW or blocked arrays (`conv2d`, `pack_weights`), layers that pick and keep their
kernel (`Conv2d`, `MaxPool2d`, `Sequential`) and the bundled networks. `directconv` re-exports what users need."""
