"""The foundation every package stands on: the event record, instruments, units, config base, owner-less
array views, the kernels' clock, compile-time accounting. Imports nothing else of hftmm."""
