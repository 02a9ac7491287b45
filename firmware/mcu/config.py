"""The supervisor's settings: board wiring, timings and thresholds, with the defaults of the Liuhen board."""


class Config:
    """One attribute per setting; `update()` changes some and refuses names that do not exist."""

    def __init__(self) -> None:
        # UART to the main board (UART0 on GP0/GP1). rxbuf holds more than one largest frame,
        # so that a frame arriving while the loop is busy (a signature takes ~80 ms) is kept.
        self.uart_id = 0
        self.uart_tx_pin = 0
        self.uart_rx_pin = 1
        self.baudrate = 115200
        self.uart_rxbuf = 2048
        # I2C0 to the secure element. 100 kHz: the wake-up pulse (a write to address 0) must
        # hold SDA low for at least 60 us, which 9 bit times at 100 kHz do.
        self.i2c_id = 0
        self.i2c_sda_pin = 4
        self.i2c_scl_pin = 5
        self.i2c_freq = 100_000
        self.se_address = 0x60
        self.se_slot = 0
        # Buttons to ground with pull-ups: (name, pin, long-press ms).
        self.buttons = (("record", 6, 1500), ("mark", 7, 1500), ("power", 8, 3000))
        self.debounce_ms = 30
        # Enclosure switch to ground, closed while the case is shut.
        self.tamper_pin = 9
        self.tamper_debounce_ms = 50
        # LEDs (GA/T 947: green on, yellow audio, red video) and the vibration motor's MOSFET.
        self.leds = (("green", 10), ("yellow", 11), ("red", 12))
        self.haptic_pin = 13
        # Charger STAT output (open drain, low while charging) and external power present (high).
        self.charging_pin = 14
        self.external_pin = 15
        # Battery through a divider to ADC0: mV = raw * vref * (top + bottom) / (bottom * 65535).
        self.battery_adc_pin = 26
        self.adc_vref_mv = 3300
        self.divider_top_ohm = 100_000
        self.divider_bottom_ohm = 100_000
        self.battery_sample_ms = 20
        self.battery_smoothing = 32  # moving average over about this many samples
        self.battery_report_ms = 60_000
        self.battery_hysteresis_pct = 2
        self.charge_offset_mv = 120  # the charger lifts the cell voltage by about this much
        # Power-fail warning: raw samples in a row under power_fail_mv, on battery only; the
        # main board then has about power_holdup_ms of work left. Re-armed above power_rearm_mv.
        self.power_fail_mv = 3350
        self.power_rearm_mv = 3500
        self.power_fail_samples = 3
        self.power_holdup_ms = 3000
        # Link (docs/protocol.md 2.5): resend after ack_ms, tries sends in all; idle_ms of
        # silence ends a cut frame. The simulator scales these by its speed.
        self.ack_ms = 100
        self.tries = 6
        self.idle_ms = 20
        self.queue_max = 16
        self.sticky_retry_ms = 1000
        # Main loop.
        self.tick_ms = 5
        self.watchdog_ms = 2000

    def update(self, values: dict) -> "Config":
        for key in values:
            if not hasattr(self, key):
                raise ValueError("unknown setting " + key)
            setattr(self, key, values[key])
        return self
