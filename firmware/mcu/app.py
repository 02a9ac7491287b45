"""The supervisor: inputs, outputs, battery, RTC and secure element, over the link to the main board.

`App.tick(now_ms)` is the whole of the work, called every few milliseconds by main.py on the
board or by the simulator in simulated time. Message bodies are specified in docs/protocol.md 2.4.
"""

import binascii

from firmware.mcu import battery, outputs, rtc
from firmware.mcu.inputs import Button, Debouncer
from firmware.mcu.link import LATEST, STICKY, Link
from firmware.mcu.secure_element import SecureElementError
from protocol import mcu_link

TYPE_CHECKING = False  # MicroPython has no typing module; mypy reads this name as True
if TYPE_CHECKING:
    from typing import Any

    from firmware.mcu.board import Board
    from firmware.mcu.config import Config
    from firmware.mcu.secure_element import SecureElement

ES256 = "es256"
TAMPER_SOURCE = "case"


class BadValue(ValueError):
    """A body field missing, of the wrong type or out of range: refused with mcu.bad_value."""


def _field(body: dict, key: str, kind: type) -> "Any":
    value = body.get(key)
    # type() rather than isinstance(): a bool is an int on CPython but not on MicroPython.
    if type(value) is not kind:
        raise BadValue(key)
    return value


def _int(body: dict, key: str, low: int, high: int) -> int:
    value = _field(body, key, int)
    if not low <= value <= high:
        raise BadValue(key)
    return value


def _choice(body: dict, key: str, choices: tuple) -> str:
    value = _field(body, key, str)
    if value not in choices:
        raise BadValue(key)
    return value


def _hex_bytes(body: dict, key: str, size: int) -> bytes:
    """Exactly `size` bytes as lowercase hex, the link's one spelling of binary data."""
    text = _field(body, key, str)
    if len(text) != 2 * size or text.strip("0123456789abcdef"):
        raise BadValue(key)
    return binascii.unhexlify(text)


def _hex(data: bytes) -> str:
    return binascii.hexlify(data).decode()


class App:
    def __init__(self, cfg: "Config", board: "Board", se: "SecureElement | None") -> None:
        self.cfg = cfg
        self.board = board
        self.se = se
        # Read once: a key that cannot be read at boot is no key (KEY_GET and SIGN_REQUEST are refused).
        self.public_key = _read_public_key(se)
        self.link = Link(cfg, board.uart_write)
        long_ms = {}
        for name, _, hold_ms in cfg.buttons:
            long_ms[name] = hold_ms
        self.buttons = [(Button(name, cfg.debounce_ms, long_ms[name]), pin) for name, pin in board.buttons]
        self.tamper = Debouncer(cfg.tamper_debounce_ms)
        self.tamper_count = 0
        self.leds = {}
        for name in board.leds:
            self.leds[name] = outputs.Pattern()
        self.haptic = outputs.Pattern()
        self.gauge = battery.Gauge(cfg.battery_smoothing, cfg.battery_hysteresis_pct, cfg.charge_offset_mv)
        self.power = battery.PowerFailDetector(cfg.power_fail_mv, cfg.power_rearm_mv, cfg.power_fail_samples)
        self.charging = False
        self.external = False
        # The RP2040's RTC is not battery-backed: after any MCU start its time is unknown until set.
        # Once set, the time is the set time plus uptime since, in ms: the RTC counts whole seconds
        # from the same crystal, so it would only add rounding.
        self.rtc_valid = False
        self._rtc_anchor = (0, 0)  # (utc_ms, uptime ms) of the last RTC_SET
        self._next_sample = 0
        self._next_report = 0
        self._signing: list = []  # (request seq, digest): signed after the request is acknowledged
        self._handlers = {
            mcu_link.LED_SET: self._led_set,
            mcu_link.HAPTIC: self._haptic,
            mcu_link.BATTERY_GET: self._battery_get,
            mcu_link.RTC_GET: self._rtc_get,
            mcu_link.RTC_SET: self._rtc_set,
            mcu_link.KEY_GET: self._key_get,
            mcu_link.SIGN_REQUEST: self._sign_request,
        }
        self._now = 0

    def tick(self, now: int) -> None:
        self._now = now
        # Measured first, so that a BATTERY_GET in the very first tick has a value to answer.
        if now >= self._next_sample:
            self._next_sample = now + self.cfg.battery_sample_ms
            self._measure(now)
        self.link.receive(self.board.uart_read(), now, self._handle)
        self._sign_pending()
        self._scan_buttons(now)
        self._scan_tamper(now)
        for name in self.leds:
            self.board.set_led(name, self.leds[name].level(now))
        self.board.set_haptic(self.haptic.level(now))
        self.link.service(now)

    # ----------------------------------------------------------------------------- inputs

    def _scan_buttons(self, now: int) -> None:
        for button, pin in self.buttons:
            event = button.update(self.board.pressed(pin), now)
            if event is not None:
                # age_ms lets the main board date the press on its own clock: a short press is
                # only known at its release.
                body = {"button": button.name, "action": event[0], "t_ms": event[1], "age_ms": now - event[1]}
                self.link.send(mcu_link.BUTTON, body)

    def _scan_tamper(self, now: int) -> None:
        was = self.tamper.level
        if not self.tamper.update(self.board.tamper_open(), now):
            return
        opened = self.tamper.level
        if opened:
            self.tamper_count += 1
        elif was is None:
            return  # shut at start: the normal state, nothing to report
        body = {"source": TAMPER_SOURCE, "opened": opened, "count": self.tamper_count, "t_ms": self.tamper.changed_at}
        self.link.send(mcu_link.TAMPER, body, STICKY)

    def _measure(self, now: int) -> None:
        cfg = self.cfg
        mv = battery.adc_to_mv(self.board.battery_raw(), cfg.adc_vref_mv, cfg.divider_top_ohm, cfg.divider_bottom_ohm)
        charging = self.board.charging()
        external = self.board.external_power()
        if self.power.add(mv, external):
            self.link.send(mcu_link.POWER_FAIL, {"mv": mv, "ms_left": cfg.power_holdup_ms}, STICKY)
        changed = self.gauge.add(mv, charging)
        if changed or charging != self.charging or external != self.external or now >= self._next_report:
            self.charging = charging
            self.external = external
            self._next_report = now + cfg.battery_report_ms
            self.link.send(mcu_link.BATTERY, self._battery_body(), LATEST)

    def _battery_body(self) -> dict:
        gauge = self.gauge
        return {"mv": gauge.mv, "percent": gauge.percent, "charging": self.charging, "external": self.external}

    # ----------------------------------------------------------------------------- messages

    def _handle(self, message: "mcu_link.Message") -> "str | None":
        handler = self._handlers.get(message.ftype)
        if handler is None:
            return "mcu.unknown_type"
        try:
            return handler(message.body, message.seq)
        except BadValue:
            return "mcu.bad_value"

    def _led_set(self, body: dict, seq: int) -> "str | None":
        led = _choice(body, "led", tuple(self.leds))
        mode = _choice(body, "mode", outputs.LED_MODES)
        period = 1000
        if "period_ms" in body:
            period = _int(body, "period_ms", outputs.MIN_PERIOD_MS, outputs.MAX_PERIOD_MS)
        outputs.set_led(self.leds[led], mode, period, self._now)
        return None

    def _haptic(self, body: dict, seq: int) -> "str | None":
        steps = _field(body, "pattern_ms", list)
        if len(steps) > outputs.MAX_PATTERN_STEPS:
            raise BadValue("pattern_ms")
        for step in steps:
            if type(step) is not int or not 0 < step <= outputs.MAX_STEP_MS:
                raise BadValue("pattern_ms")
        self.haptic.play(tuple(steps), self._now, False)
        return None

    def _battery_get(self, body: dict, seq: int) -> "str | None":
        answer = self._battery_body()
        answer["req"] = seq
        self.link.send(mcu_link.BATTERY, answer)
        return None

    def _rtc_get(self, body: dict, seq: int) -> "str | None":
        if self.rtc_valid:
            utc_ms = self._rtc_anchor[0] + self._now - self._rtc_anchor[1]
        else:
            utc_ms = rtc.from_datetime(self.board.rtc.datetime())
        self.link.send(mcu_link.RTC_TIME, {"utc_ms": utc_ms, "valid": self.rtc_valid, "req": seq})
        return None

    def _rtc_set(self, body: dict, seq: int) -> "str | None":
        self.set_rtc(_int(body, "utc_ms", rtc.MIN_UTC_MS, rtc.MAX_UTC_MS - 1))
        return None

    def set_rtc(self, utc_ms: int) -> None:
        """Set the clock (RTC_SET; the simulator, for an RTC set before it started)."""
        self.board.rtc.datetime(rtc.to_datetime(utc_ms))
        self.rtc_valid = True
        self._rtc_anchor = (utc_ms, self._now)

    def _key_get(self, body: dict, seq: int) -> "str | None":
        if self.public_key is None:
            return "mcu.no_secure_element"
        self.link.send(mcu_link.KEY_INFO, {"alg": ES256, "public_key": "04" + _hex(self.public_key), "req": seq})
        return None

    def _sign_request(self, body: dict, seq: int) -> "str | None":
        _choice(body, "alg", (ES256,))
        digest = _hex_bytes(body, "digest", 32)
        if self.public_key is None:
            return "mcu.no_secure_element"
        self._signing.append((seq, digest))
        return None

    def _sign_pending(self) -> None:
        """Sign after the request's ACK went out: the chip takes up to 80 ms, longer than the
        main board waits for an ACK."""
        se = self.se
        while self._signing and se is not None:
            seq, digest = self._signing.pop(0)
            answer = {"alg": ES256, "req": seq}
            try:
                answer["sig"] = _hex(se.sign_digest(digest))
            except SecureElementError:
                answer["code"] = "mcu.secure_element"
            self.link.send(mcu_link.SIGN_RESPONSE, answer)


def _read_public_key(se: "SecureElement | None") -> "bytes | None":
    if se is None:
        return None
    try:
        return se.public_key()
    except SecureElementError:
        return None
