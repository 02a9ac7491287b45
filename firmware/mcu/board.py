"""The supervisor's peripherals, wired from `machine` as docs/sections/recorder-mcu.md describes.

The only module besides main.py that touches `machine`: the logic modules see levels, millivolts
and bytes. The simulator and the MicroPython tests put `simulators.mcu_machine` in its place.
"""

import machine

TYPE_CHECKING = False  # MicroPython has no typing module; mypy reads this name as True
if TYPE_CHECKING:
    from firmware.mcu.config import Config


class Board:
    def __init__(self, cfg: "Config") -> None:
        pin = machine.Pin
        # Buttons and the tamper switch close to ground: pulled up, a 0 means pressed or shut.
        self.buttons = [(name, pin(number, pin.IN, pin.PULL_UP)) for name, number, _ in cfg.buttons]
        self._tamper = pin(cfg.tamper_pin, pin.IN, pin.PULL_UP)
        self.leds = {}
        for name, number in cfg.leds:
            self.leds[name] = pin(number, pin.OUT, value=0)
        self._haptic = pin(cfg.haptic_pin, pin.OUT, value=0)
        self._charging = pin(cfg.charging_pin, pin.IN, pin.PULL_UP)
        self._external = pin(cfg.external_pin, pin.IN, pin.PULL_DOWN)
        self._adc = machine.ADC(pin(cfg.battery_adc_pin))
        self._uart = machine.UART(
            cfg.uart_id,
            baudrate=cfg.baudrate,
            tx=pin(cfg.uart_tx_pin),
            rx=pin(cfg.uart_rx_pin),
            rxbuf=cfg.uart_rxbuf,
            timeout=0,
        )
        self.rtc = machine.RTC()
        self.i2c = machine.I2C(cfg.i2c_id, scl=pin(cfg.i2c_scl_pin), sda=pin(cfg.i2c_sda_pin), freq=cfg.i2c_freq)

    @staticmethod
    def pressed(button: "machine.Pin") -> bool:
        return button.value() == 0

    def tamper_open(self) -> bool:
        return self._tamper.value() == 1

    def battery_raw(self) -> int:
        return self._adc.read_u16()

    def charging(self) -> bool:
        return self._charging.value() == 0  # the charger's STAT pulls low while it charges

    def external_power(self) -> bool:
        return self._external.value() == 1

    def set_led(self, name: str, on: bool) -> None:
        self.leds[name].value(1 if on else 0)

    def set_haptic(self, on: bool) -> None:
        self._haptic.value(1 if on else 0)

    def uart_read(self) -> bytes:
        waiting = self._uart.any()
        return (self._uart.read(waiting) or b"") if waiting else b""

    def uart_write(self, data: bytes) -> None:
        self._uart.write(data)
