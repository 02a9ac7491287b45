"""Scripted scenarios for the supervisor MCU's code, printed one line per event.

Runs on CPython and under MicroPython (WebAssembly, from .mpy files); test_mcu_micropython.py
checks that both print the same lines, and test_mcu_logic.py uses the Harness for assertions.
Bodies are printed canonically encoded, never as dicts: MicroPython's dict order differs.
"""

import hashlib
import sys

from simulators import mcu_machine

sys.modules["machine"] = mcu_machine  # before the firmware imports `machine`

from firmware.mcu import battery, main, rtc  # noqa: E402
from firmware.mcu.config import Config  # noqa: E402
from firmware.mcu.secure_element import SecureElement, SecureElementError, atecc_crc, command_packet  # noqa: E402
from protocol import canonical, mcu_link  # noqa: E402

NAMES = mcu_link.TYPE_NAMES
REPLIES = (mcu_link.ACK, mcu_link.NACK)


class FakeKey(SecureElement):
    """A deterministic stand-in for the chip's key: MicroPython has no ECDSA, and the link only
    carries the bytes. (The simulator's key, simulators.mcu.SoftSecureElement, signs for real.)"""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def public_key(self) -> bytes:
        return hashlib.sha256(b"x").digest() + hashlib.sha256(b"y").digest()

    def sign_digest(self, digest: bytes) -> bytes:
        if self.fail:
            raise SecureElementError("test")
        return hashlib.sha256(digest + b"r").digest() + hashlib.sha256(digest + b"s").digest()


def mv_to_raw(mv: int) -> int:
    """The ADC reading for a battery voltage, with the default 1:1 divider and 3.3 V reference."""
    return (mv * 65535 + 6599) // 6600


class Harness:
    """One simulated supervisor, with the main board's end of the link, in simulated time."""

    def __init__(self, settings: "dict | None" = None, chip: "SecureElement | None" = None,
                 busy_reads: int = 0, case_shut: bool = True, battery_mv: int = 3900) -> None:
        self.cfg = Config().update(settings or {})
        self.board = mcu_machine.SimBoard()
        mcu_machine.use(self.board)
        self.pins = {}
        for name, pin, _ in self.cfg.buttons:
            self.pins[name] = pin
        self.board.inputs[self.cfg.tamper_pin] = 0 if case_shut else 1
        self.board.inputs[self.cfg.charging_pin] = 1
        self.board.inputs[self.cfg.external_pin] = 0
        self.set_battery(battery_mv)
        self.chip = None
        if chip is not None:
            self.chip = mcu_machine.Atecc608Emulator(chip, busy_reads=busy_reads)
            self.board.i2c_devices[self.cfg.se_address] = self.chip
        self.app = main.boot(self.cfg, self._sleep_ms)
        self.decoder = mcu_link.FrameDecoder()
        self.received: list = []  # messages from the MCU, in order
        self.auto_ack = True
        self.hide: tuple = ()  # message types not printed
        self.seq = 0

    def _sleep_ms(self, ms: int) -> None:
        pass  # the emulated chip answers at once

    # -- the outside world

    def set_battery(self, mv: int) -> None:
        self.board.analog[self.cfg.battery_adc_pin] = mv_to_raw(mv)

    def set_power(self, charging: bool, external: bool) -> None:
        self.board.inputs[self.cfg.charging_pin] = 0 if charging else 1
        self.board.inputs[self.cfg.external_pin] = 1 if external else 0

    def button(self, name: str, down: bool) -> None:
        self.board.inputs[self.pins[name]] = 0 if down else 1

    def case(self, opened: bool) -> None:
        self.board.inputs[self.cfg.tamper_pin] = 1 if opened else 0

    def led(self, name: str) -> int:
        for led, pin in self.cfg.leds:
            if led == name:
                return self.board.level(pin)
        raise KeyError(name)

    def haptic(self) -> int:
        return self.board.level(self.cfg.haptic_pin)

    # -- the main board

    def send(self, ftype: int, body: dict, seq: "int | None" = None) -> int:
        if seq is None:
            seq = self.seq
            self.seq = (self.seq + 1) & 0xFF
        self.board.feed_uart(mcu_link.encode_message(ftype, seq, body))
        return seq

    def run(self, ms: int, step: int = 1) -> None:
        """Advance simulated time by `ms`, ticking every `step` ms, printing what the MCU sends."""
        end = self.board.now_ms + ms
        while self.board.now_ms < end:
            self.board.now_ms += step
            self.app.tick(self.board.now_ms)
            for frame in self.decoder.feed(self.board.take_uart()):
                self._received(frame)

    def _received(self, frame: "mcu_link.Frame") -> None:
        message = mcu_link.decode_message(frame)
        self.received.append(message)
        if message.ftype not in self.hide:
            body = canonical.encode(message.body).decode()
            print(str(self.board.now_ms) + " " + NAMES[message.ftype] + " " + str(message.seq) + " " + body)
        if self.auto_ack and message.ftype not in REPLIES:
            self.send(mcu_link.ACK, {"seq": message.seq})

    def last(self, ftype: int) -> "mcu_link.Message":
        for message in reversed(self.received):
            if message.ftype == ftype:
                return message
        raise KeyError(NAMES[ftype])


def title(text: str) -> None:
    print("# " + text)


def show(label: str, value: object) -> None:
    print(label + " " + str(value))


# ------------------------------------------------------------------------------------------


def scenario_boot() -> None:
    title("boot: a battery report, nothing about a shut case")
    h = Harness()
    h.run(100)
    title("boot with the case open: tamper reported")
    h = Harness(case_shut=False)
    h.run(100)


def press(h: Harness, name: str, hold_ms: int, bounce: bool = False) -> None:
    if bounce:  # contacts chatter for 8 ms on the way down and up
        for i in range(8):
            h.button(name, i % 2 == 0)
            h.run(1)
    h.button(name, True)
    h.run(hold_ms)
    if bounce:
        for i in range(8):
            h.button(name, i % 2 == 1)
            h.run(1)
    h.button(name, False)
    h.run(100)


def scenario_buttons() -> None:
    title("buttons: short press, bouncing press, long press, glitch, overlap")
    h = Harness()
    h.run(50)
    press(h, "record", 120)
    press(h, "mark", 200, bounce=True)
    press(h, "record", 1700)
    press(h, "power", 2000)
    press(h, "power", 3200, bounce=True)
    press(h, "mark", 20)
    h.button("record", True)
    h.run(60)
    h.button("mark", True)
    h.run(100)
    h.button("record", False)
    h.run(100)
    h.button("mark", False)
    h.run(100)


def scenario_leds() -> None:
    title("LEDs: on, off, blink; refused bodies")
    h = Harness()
    h.run(20)
    h.send(mcu_link.LED_SET, {"led": "green", "mode": "on"})
    h.send(mcu_link.LED_SET, {"led": "red", "mode": "blink", "period_ms": 200})
    h.send(mcu_link.LED_SET, {"led": "yellow", "mode": "blink"})
    levels = []
    for _ in range(30):
        h.run(50, 5)
        levels.append(str(h.led("green")) + str(h.led("yellow")) + str(h.led("red")))
    show("levels", " ".join(levels))
    h.send(mcu_link.LED_SET, {"led": "red", "mode": "off"})
    h.run(20)
    show("red after off", h.led("red"))
    for body in (
        {"led": "blue", "mode": "on"},
        {"led": "red", "mode": "dim"},
        {"led": "red", "mode": "blink", "period_ms": 50},
        {"led": "red", "mode": "blink", "period_ms": True},
        {"led": "red"},
        {"led": 1, "mode": "on"},
    ):
        h.send(mcu_link.LED_SET, body)
        h.run(5)


def scenario_haptic() -> None:
    title("haptic: a pattern played once, a stop, refused patterns")
    h = Harness()
    h.run(20)
    start = len(h.board.history)
    h.send(mcu_link.HAPTIC, {"pattern_ms": [100, 50, 100, 50, 300]})
    h.run(800, 5)
    h.send(mcu_link.HAPTIC, {"pattern_ms": [1000]})
    h.run(200, 5)
    h.send(mcu_link.HAPTIC, {"pattern_ms": []})
    h.run(50, 5)
    for ms, pin, level in h.board.history[start:]:
        if pin == h.cfg.haptic_pin:
            show("haptic", str(ms) + " " + str(level))
    for body in ({"pattern_ms": [0]}, {"pattern_ms": [True]}, {"pattern_ms": [1] * 17}, {"pattern_ms": 5}, {}):
        h.send(mcu_link.HAPTIC, body)
        h.run(5)


def scenario_battery() -> None:
    title("battery: discharge sweep, hysteresis, charging, external power, heartbeat, BATTERY_GET")
    h = Harness({"battery_report_ms": 5000}, battery_mv=4200)
    h.run(100, 5)
    mv = 4200
    while mv > 3500:  # stays above the power-fail threshold
        mv -= 7
        h.set_battery(mv)
        h.run(200, 10)
    title("battery: voltage wandering by 10 mV around one point is reported once")
    h.hide = (mcu_link.BATTERY,)
    h.set_battery(3802)
    h.run(5000, 10)
    h.hide = ()
    for i in range(20):
        h.set_battery(3802 + (10 if i % 2 else -10))
        h.run(300, 10)
    title("battery: docked, charging, then charged")
    h.set_power(True, True)
    h.set_battery(4000)
    h.run(1000, 10)
    h.set_power(False, True)
    h.set_battery(4180)
    h.run(1000, 10)
    h.set_power(False, False)
    h.run(6000, 10)
    seq = h.send(mcu_link.BATTERY_GET, {})
    h.run(10)
    show("answer to", h.last(mcu_link.BATTERY).body["req"] == seq)
    title("battery: curve")
    for mv in range(3300, 4250, 25):
        show(str(mv), battery.percent_from_mv(mv))
    show("adc", battery.adc_to_mv(mv_to_raw(3777), 3300, 100_000, 100_000))


def scenario_power_fail() -> None:
    title("power fail: warned once, ahead of queued reports, resent until acknowledged")
    h = Harness(battery_mv=3700)
    h.run(100, 5)
    h.auto_ack = False  # the main board is busy
    h.hide = (mcu_link.BATTERY,)
    h.set_battery(3300)
    h.run(2500, 5)
    h.auto_ack = True
    h.run(1500, 5)
    title("power fail: not again until re-armed above 3500 mV")
    h.set_battery(3400)
    h.run(200, 5)
    h.set_battery(3300)
    h.run(200, 5)
    h.set_battery(3600)
    h.run(200, 5)
    h.set_battery(3300)
    h.run(200, 5)
    title("power fail: never on external power")
    h.set_power(True, True)
    h.set_battery(3600)
    h.run(200, 5)
    h.set_battery(3300)
    h.run(500, 5)
    title("power fail: one low reading is noise")
    h = Harness(battery_mv=3700)
    h.hide = (mcu_link.BATTERY,)
    h.run(100, 5)
    h.set_battery(3000)
    h.run(20)
    h.set_battery(3700)
    h.run(300, 5)


def scenario_rtc() -> None:
    title("rtc: lost power at boot, set, read, refused values")
    h = Harness()
    h.run(10)
    h.send(mcu_link.RTC_GET, {})
    h.run(10)
    h.run(2500, 10)
    h.send(mcu_link.RTC_GET, {})
    h.run(10)
    for utc_ms in (1764000000123, 951782399999, 946684800000, 4102444799999, 1709164800000):
        h.send(mcu_link.RTC_SET, {"utc_ms": utc_ms})
        h.run(10)
        h.run(1500, 10)
        h.send(mcu_link.RTC_GET, {})
        h.run(10)
    for body in ({"utc_ms": 946684799999}, {"utc_ms": 4102444800000}, {"utc_ms": True}, {}):
        h.send(mcu_link.RTC_SET, body)
        h.run(10)
    title("rtc: conversions agree with the simulated RTC's own calendar")
    agree = 0
    cases = 0
    day_ms = 86_400_000
    utc_ms = 0
    while utc_ms < 4_102_444_800_000:
        dt = rtc.to_datetime(utc_ms)
        ok = dt == mcu_machine.tuple_from_seconds(utc_ms // 1000)
        ok = ok and rtc.from_datetime(dt) == utc_ms // 1000 * 1000
        ok = ok and mcu_machine.seconds_from_tuple(dt) * 1000 == utc_ms // 1000 * 1000
        agree += 1 if ok else 0
        cases += 1
        utc_ms += 37 * day_ms + 3_601_001
    show("agree", str(agree) + "/" + str(cases))
    for utc_ms in (0, 68_169_600_000, 951_868_799_000, 1_700_000_000_000, 4_102_444_799_000):
        show(str(utc_ms), rtc.to_datetime(utc_ms))


def scenario_tamper() -> None:
    title("tamper: opened and shut, bounce ignored, sticky until acknowledged")
    h = Harness()
    h.run(100)
    h.case(True)
    h.run(20)
    h.case(False)  # a 20 ms flicker is below the 50 ms debounce
    h.run(200)
    h.case(True)
    h.run(200)
    h.case(False)
    h.run(200)
    h.auto_ack = False
    h.case(True)
    h.run(2500, 5)
    h.auto_ack = True
    h.run(1200, 5)


def scenario_secure_element() -> None:
    title("secure element: key, signature, refused requests")
    h = Harness(chip=FakeKey())
    h.run(10)
    h.send(mcu_link.KEY_GET, {})
    h.run(10)
    digest = hashlib.sha256(b"manifest").digest()
    h.send(mcu_link.SIGN_REQUEST, {"alg": "es256", "digest": digest.hex()})
    h.run(10)
    expected = FakeKey().sign_digest(digest).hex()
    show("signature from the chip", h.last(mcu_link.SIGN_RESPONSE).body["sig"] == expected)
    chip = h.chip
    assert chip is not None
    show("chip commands", chip.commands)
    show("chip awake after", chip.awake)
    for body in (
        {"alg": "es256", "digest": digest.hex().upper()},
        {"alg": "es256", "digest": digest.hex()[:62]},
        {"alg": "ed25519", "digest": digest.hex()},
        {"alg": "es256"},
    ):
        h.send(mcu_link.SIGN_REQUEST, body)
        h.run(10)
    title("secure element: a chip that needs polling")
    h = Harness(chip=FakeKey(), busy_reads=3)
    h.run(10)
    h.send(mcu_link.SIGN_REQUEST, {"alg": "es256", "digest": digest.hex()})
    h.run(10)
    title("secure element: a chip that fails after boot")
    key = FakeKey()
    h = Harness(chip=key)
    key.fail = True
    h.run(10)
    h.send(mcu_link.SIGN_REQUEST, {"alg": "es256", "digest": digest.hex()})
    h.run(10)
    title("secure element: none fitted")
    h = Harness()
    h.run(10)
    h.send(mcu_link.KEY_GET, {})
    h.send(mcu_link.SIGN_REQUEST, {"alg": "es256", "digest": digest.hex()})
    h.run(10)
    title("secure element: ATECC packets")
    show("wake answer crc", atecc_crc(b"\x04\x11").hex())
    show("success crc", atecc_crc(b"\x04\x00").hex())
    show("same crc both ways", atecc_crc(digest) == mcu_machine.atecc_crc(digest))
    show("genkey", command_packet(0x40, 0x00, 0, b"").hex())
    show("sign", command_packet(0x41, 0x80, 2, b"").hex())
    show("nonce", command_packet(0x16, 0x03, 0, bytes(32)).hex())


def scenario_link() -> None:
    title("link: refused frames")
    h = Harness()
    h.run(10)
    h.send(0x77, {})
    h.send(mcu_link.BUTTON, {"button": "record"})
    h.board.feed_uart(mcu_link.encode_frame(mcu_link.LED_SET, 40, b'{"led": "red"}'))
    h.board.feed_uart(mcu_link.encode_frame(mcu_link.LED_SET, 41, b"[1]"))
    h.board.feed_uart(mcu_link.encode_frame(mcu_link.LED_SET, 42, b"\xff"))
    h.run(10)
    title("link: a repeated request is acknowledged, acted on once; a repeated question answered again")
    start = len(h.board.history)
    for _ in range(2):
        h.send(mcu_link.HAPTIC, {"pattern_ms": [30]}, seq=50)
        h.run(10)
    h.run(100)
    show("haptic edges", len([e for e in h.board.history[start:] if e[1] == h.cfg.haptic_pin]))
    for _ in range(2):
        h.send(mcu_link.RTC_GET, {}, seq=51)
        h.run(10)
    title("link: unacknowledged frames are resent every 100 ms, 6 sends in all, then dropped")
    h.auto_ack = False
    press(h, "mark", 100)
    h.run(800)
    h.auto_ack = True
    press(h, "record", 100)
    title("link: a NACK from the main board stops the resending")
    h.auto_ack = False
    press(h, "mark", 100)
    h.send(mcu_link.NACK, {"seq": h.received[-1].seq, "code": "mcu.bad_value"})
    h.run(300)
    h.auto_ack = True
    show("counters", canonical.encode(h.app.link.counters).decode())
    title("link: garbage, a cut frame, then a good one after the line goes quiet")
    h.board.feed_uart(b"\x00\xff\xa5\x5a\x01" + mcu_link.encode_message(mcu_link.RTC_GET, 60, {})[:9])
    h.run(5)
    h.board.feed_uart(mcu_link.encode_message(mcu_link.RTC_GET, 61, {}))
    h.run(40)
    decoder = h.app.link.decoder
    show("decoder", str(decoder.discarded) + " " + str(decoder.bad_headers) + " " + str(decoder.bad_crcs))
    title("link: the queue keeps at most queue_max frames, dropping the oldest unsticky one")
    h = Harness({"queue_max": 3, "tries": 100})
    h.run(10)
    h.auto_ack = False
    h.hide = (mcu_link.BUTTON,)
    for _ in range(5):  # the first is in flight, the second dropped
        press(h, "mark", 60)
    h.case(True)
    h.run(100)
    h.auto_ack = True
    h.hide = ()
    h.run(3000, 5)
    show("dropped", h.app.link.counters["dropped"])


SCENARIOS = (
    scenario_boot,
    scenario_buttons,
    scenario_leds,
    scenario_haptic,
    scenario_battery,
    scenario_power_fail,
    scenario_rtc,
    scenario_tamper,
    scenario_secure_element,
    scenario_link,
)


def main_() -> None:
    for scenario in SCENARIOS:
        scenario()
    print("done")


if __name__ == "__main__":
    main_()
