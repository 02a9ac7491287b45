"""Hardware interfaces of the recorder and the real drivers behind them.

The interfaces (media, gnss, clock, supervisor, storage) are plain Python and
import anywhere. Each real driver imports its library (picamera2, pyserial,
pynmea2) inside the driver, so this package imports on any machine; the
simulators in `simulators/` implement the same interfaces.
"""
