"""Battery: ADC reading to millivolts, millivolts to percent, and the power-fail warning.

Integers only, as everywhere on the link: millivolts and whole percents.
"""

# A 1S Li-ion cell discharged at the recorder's load (camera, encoder, radio on): millivolts
# at the terminals against the charge left, highest first. Between points it is linear.
DISCHARGE_CURVE = (
    (4150, 100),
    (4050, 90),
    (3970, 80),
    (3880, 65),
    (3800, 50),
    (3750, 40),
    (3710, 30),
    (3670, 20),
    (3620, 12),
    (3540, 5),
    (3450, 2),
    (3350, 0),
)


def adc_to_mv(raw_u16: int, vref_mv: int, top_ohm: int, bottom_ohm: int) -> int:
    """The battery voltage behind a resistor divider, from a 16-bit ADC reading."""
    return raw_u16 * vref_mv * (top_ohm + bottom_ohm) // (bottom_ohm * 65535)


def percent_from_mv(mv: int) -> int:
    """Charge left (0..100) at a terminal voltage, by the discharge curve."""
    high_mv, high_pct = DISCHARGE_CURVE[0]
    if mv >= high_mv:
        return 100
    for low_mv, low_pct in DISCHARGE_CURVE[1:]:
        if mv >= low_mv:
            return low_pct + (mv - low_mv) * (high_pct - low_pct) // (high_mv - low_mv)
        high_mv, high_pct = low_mv, low_pct
    return 0


class Gauge:
    """Smoothed voltage and a reported percentage that does not flicker.

    The reported percentage moves only when the estimate is `hysteresis` points away from it,
    or reaches 0 or 100: load changes make the cell voltage wander by a few millivolts, and a
    display going 50, 49, 50, 49 is worse than one that lags by a point.
    """

    def __init__(self, smoothing: int, hysteresis: int, charge_offset_mv: int) -> None:
        self.smoothing = smoothing
        self.hysteresis = hysteresis
        self.charge_offset_mv = charge_offset_mv
        self.mv = 0
        self.percent = -1  # none yet
        self._sum = -1  # smoothing * average, kept whole so that the average loses no precision

    def add(self, mv: int, charging: bool) -> bool:
        """Add one sample; True when the reported percentage changed."""
        if self._sum < 0:
            self._sum = mv * self.smoothing
        else:
            self._sum += mv - self._sum // self.smoothing
        self.mv = self._sum // self.smoothing
        resting_mv = self.mv - self.charge_offset_mv if charging else self.mv
        estimate = percent_from_mv(resting_mv)
        moved = estimate in (0, 100) or abs(estimate - self.percent) >= self.hysteresis
        if estimate != self.percent and (self.percent < 0 or moved):
            self.percent = estimate
            return True
        return False


class PowerFailDetector:
    """Fires once when `samples` raw readings in a row are below `fail_mv` on battery power.

    Raw rather than smoothed readings, so the warning is not late by the averaging; several in a
    row, so one noisy reading does not stop a recording. Re-armed when the voltage is back above
    `rearm_mv` or external power returns.
    """

    def __init__(self, fail_mv: int, rearm_mv: int, samples: int) -> None:
        self.fail_mv = fail_mv
        self.rearm_mv = rearm_mv
        self.samples = samples
        self._low = 0
        self._fired = False

    def add(self, mv: int, external: bool) -> bool:
        """Add one raw sample; True when the warning fires."""
        if external or mv >= self.rearm_mv:
            self._fired = False
        if external or mv >= self.fail_mv:
            self._low = 0
            return False
        self._low += 1
        if self._low >= self.samples and not self._fired:
            self._fired = True
            return True
        return False
