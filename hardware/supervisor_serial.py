"""The supervisor MCU over a serial port: the main board's end of the MCU link (docs/protocol.md 2).

`SerialSupervisor(url)` opens the port with `serial.serial_for_url`, so the same driver runs on
the board's UART (/dev/serial0, /dev/ttyAMA1), on a simulator's pty and on `loop://`. A reader
thread turns bytes into frames, acknowledges every MCU message and queues events (buttons,
battery, power fail, tamper); requests go one at a time, each resent until acknowledged, and
those with an answer (battery, RTC, key, signature) wait for the frame that names their
sequence number. pyserial is imported in `start()`, so this module imports anywhere.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric import ec

from hardware.supervisor import (
    GREEN,
    LED_BLINK,
    LED_OFF,
    LED_ON,
    RED,
    YELLOW,
    BatteryStatus,
    ButtonEvent,
    PowerFail,
    RtcTime,
    SupervisorError,
    SupervisorEvent,
    SupervisorTimeout,
    Tamper,
)
from protocol import canonical, mcu_link, signatures

if TYPE_CHECKING:
    import serial

log = logging.getLogger("liuhen.supervisor")

IDLE_S = 0.02  # 2.2: a receiver holding part of a frame drops it after 20 ms without a byte
MAX_EVENTS = 1024
NAMES = mcu_link.TYPE_NAMES


class _Request:
    """The one request in flight, filled in by the reader thread."""

    def __init__(self, seq: int, answer_type: int | None) -> None:
        self.seq = seq
        self.answer_type = answer_type
        self.acked = False
        self.refused: str | None = None
        self.answer: dict[str, Any] | None = None


def _field(body: dict[str, Any], key: str, kind: type) -> Any:
    value = body.get(key)
    if type(value) is not kind:  # not isinstance: True is no int here
        raise ValueError(f"{key} must be {kind.__name__}")
    return value


class SerialSupervisor:
    """The Supervisor interface (hardware.supervisor) over the MCU link on a serial port.

    Errors are SupervisorError with a stable code: the MCU's NACK code when it refused a request,
    "mcu.timeout" (SupervisorTimeout) when it did not answer, "mcu.link_down" when the port failed.
    """

    def __init__(
        self,
        url: str = "/dev/serial0",
        *,
        baudrate: int = 115200,
        ack_timeout: float = 0.1,
        retries: int = 5,
        answer_timeout: float = 1.0,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.url = url
        self.baudrate = baudrate
        self.ack_timeout = ack_timeout
        self.retries = retries
        self.answer_timeout = answer_timeout
        self._clock = clock
        self._port: serial.SerialBase | None = None
        self._reader: threading.Thread | None = None
        self._stopping = threading.Event()
        self._failure: str | None = None
        self._decoder = mcu_link.FrameDecoder()
        # Shared with the reader thread: the sequence number, the request in flight and the events.
        self._state = threading.Condition()
        self._seq = 0
        self._pending: _Request | None = None
        self._events: deque[SupervisorEvent] = deque()
        self._last_accepted: tuple[int, int, bytes] | None = None  # the reader's own
        self._public_key: ec.EllipticCurvePublicKey | None = None
        self._write_lock = threading.Lock()
        self._request_lock = threading.Lock()
        self._counters = {"resent": 0, "refused": 0, "events_dropped": 0}
        self._handlers: dict[int, Callable[[dict[str, Any], int], None]] = {
            mcu_link.BUTTON: self._on_button,
            mcu_link.BATTERY: self._on_battery,
            mcu_link.POWER_FAIL: self._on_power_fail,
            mcu_link.TAMPER: self._on_tamper,
            mcu_link.RTC_TIME: self._on_answer,
            mcu_link.KEY_INFO: self._on_answer,
            mcu_link.SIGN_RESPONSE: self._on_answer,
        }

    # ------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        import serial

        self._port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=IDLE_S)
        self._port.reset_input_buffer()  # what waited in the port was meant for a predecessor
        self._stopping.clear()
        self._failure = None
        self._decoder = mcu_link.FrameDecoder()
        self._reader = threading.Thread(target=self._read_loop, name=f"mcu-link {self.url}", daemon=True)
        self._reader.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._state:
            self._state.notify_all()
        if self._reader is not None:
            self._reader.join()
            self._reader = None
        if self._port is not None:
            self._port.close()
            self._port = None

    def __enter__(self) -> SerialSupervisor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stats(self) -> dict[str, int]:
        """Link diagnostics: bytes dropped, bad headers and CRCs, resends, refusals, events dropped."""
        decoder = self._decoder
        return {
            "discarded": decoder.discarded,
            "bad_headers": decoder.bad_headers,
            "bad_crcs": decoder.bad_crcs,
            **self._counters,
        }

    # ------------------------------------------------------------------------- the interface

    def next_event(self, timeout: float | None = None) -> SupervisorEvent | None:
        with self._state:
            self._state.wait_for(lambda: self._events or self._failure or self._stopping.is_set(), timeout)
            return self._events.popleft() if self._events else None

    def set_leds(self, green: bool, yellow: bool, red: bool) -> None:
        for led, on in ((GREEN, green), (YELLOW, yellow), (RED, red)):
            self.set_led(led, LED_ON if on else LED_OFF)

    def set_led(self, led: str, mode: str, period_ms: int = 1000) -> None:
        body: dict[str, Any] = {"led": led, "mode": mode}
        if mode == LED_BLINK:
            body["period_ms"] = period_ms
        self._request(mcu_link.LED_SET, body)

    def haptic(self, pattern_ms: list[int]) -> None:
        self._request(mcu_link.HAPTIC, {"pattern_ms": list(pattern_ms)})

    def battery(self) -> BatteryStatus | None:
        answer = self._request(mcu_link.BATTERY_GET, {}, mcu_link.BATTERY)
        return _checked(lambda: _battery_status(answer))

    def rtc_read(self) -> RtcTime:
        answer = self._request(mcu_link.RTC_GET, {}, mcu_link.RTC_TIME)
        return _checked(lambda: RtcTime(_field(answer, "utc_ms", int) * 1_000_000, _field(answer, "valid", bool)))

    def rtc_set(self, utc_ns: int) -> None:
        self._request(mcu_link.RTC_SET, {"utc_ms": utc_ns // 1_000_000})

    def secure_element_public_key(self) -> bytes | None:
        key = self._secure_element_key()
        return None if key is None else signatures.spki_der(key)

    def secure_element_sign(self, message: bytes) -> bytes:
        key = self._secure_element_key()
        if key is None:
            raise SupervisorError("mcu.no_secure_element", "the supervisor MCU has no secure element")
        body = {"alg": signatures.ES256, "digest": hashlib.sha256(message).hexdigest()}
        answer = self._request(mcu_link.SIGN_REQUEST, body, mcu_link.SIGN_RESPONSE)
        if "code" in answer:
            raise SupervisorError(str(answer["code"]), "the secure element could not sign")
        signature = _checked(lambda: bytes.fromhex(_field(answer, "sig", str)))
        # The main board checks what it is given: a signature that does not verify is never used.
        if not signatures.verify_raw(key, message, signature):
            raise SupervisorError("mcu.bad_signature", "the secure element's signature does not verify")
        return signature

    def _secure_element_key(self) -> ec.EllipticCurvePublicKey | None:
        if self._public_key is None:
            try:
                answer = self._request(mcu_link.KEY_GET, {}, mcu_link.KEY_INFO)
            except SupervisorError as error:
                if error.code == "mcu.no_secure_element":
                    return None
                raise
            point = _checked(lambda: bytes.fromhex(_field(answer, "public_key", str)))
            self._public_key = _checked(lambda: ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point))
        return self._public_key

    # ------------------------------------------------------------------------- requests

    def _request(self, ftype: int, body: dict[str, Any], answer_type: int | None = None) -> dict[str, Any]:
        """Send a request until acknowledged; its answer's body when `answer_type` is given."""
        with self._request_lock:
            with self._state:
                if self._port is None or self._failure:
                    raise SupervisorError("mcu.link_down", self._failure or f"{self.url} is not open: call start()")
                seq = self._take_seq()
                request = self._pending = _Request(seq, answer_type)
            try:
                self._send_until_acknowledged(request, mcu_link.encode_message(ftype, seq, body), NAMES[ftype])
                return {} if answer_type is None else self._wait_for_answer(request, NAMES[ftype])
            finally:
                with self._state:
                    self._pending = None

    def _send_until_acknowledged(self, request: _Request, frame: bytes, name: str) -> None:
        started = time.monotonic()
        for sends in range(1, self.retries + 2):
            if sends > 1:
                self._counters["resent"] += 1
            self._write(frame)
            with self._state:
                # An answer is an acknowledgement too: the MCU sends it only for a request it took.
                self._state.wait_for(
                    lambda: request.acked or request.refused or request.answer is not None or self._failure,
                    self.ack_timeout,
                )
                if request.refused:
                    self._counters["refused"] += 1
                    raise SupervisorError(request.refused, f"the supervisor MCU refused {name} (seq {request.seq})")
                if self._failure:
                    raise SupervisorError("mcu.link_down", self._failure)
                if request.acked or request.answer is not None:
                    return
        raise SupervisorTimeout(
            "mcu.timeout",
            f"no answer from the supervisor MCU on {self.url} to {name} (seq {request.seq}) "
            f"after {sends} sends in {time.monotonic() - started:.2f} s",
        )

    def _wait_for_answer(self, request: _Request, name: str) -> dict[str, Any]:
        with self._state:
            self._state.wait_for(lambda: request.answer is not None or self._failure, self.answer_timeout)
            if request.answer is not None:
                return request.answer
        answer_name = NAMES[request.answer_type or 0]
        raise SupervisorTimeout(
            "mcu.timeout",
            f"the supervisor MCU on {self.url} acknowledged {name} (seq {request.seq}) "
            f"but sent no {answer_name} within {self.answer_timeout} s",
        )

    def _take_seq(self) -> int:
        seq = self._seq
        self._seq = (seq + 1) & 0xFF
        return seq

    def _write(self, frame: bytes) -> None:
        port = self._port
        if port is None:
            raise SupervisorError("mcu.link_down", f"{self.url} is closed")
        with self._write_lock:
            port.write(frame)

    def _reply(self, ftype: int, body: dict[str, Any]) -> None:
        with self._state:
            seq = self._take_seq()
        self._write(mcu_link.encode_message(ftype, seq, body))

    # ------------------------------------------------------------------------- the reader

    def _read_loop(self) -> None:
        import serial

        port = self._port
        assert port is not None
        while not self._stopping.is_set():
            try:
                data = port.read(port.in_waiting or 1)
            except (serial.SerialException, OSError) as error:
                self._fail(f"reading {self.url} failed: {error}")
                return
            decoder = self._decoder
            frames = decoder.feed(data) if data else decoder.idle() if decoder.buffered else []
            for frame in frames:
                self._on_frame(frame)

    def _fail(self, reason: str) -> None:
        log.error("supervisor link down: %s", reason)
        with self._state:
            self._failure = reason
            self._state.notify_all()

    def _on_frame(self, frame: mcu_link.Frame) -> None:
        if frame.ftype in (mcu_link.ACK, mcu_link.NACK):
            self._on_reply(frame)
            return
        try:
            message = mcu_link.decode_message(frame)
        except (canonical.CanonicalError, mcu_link.LinkError) as error:
            self._reply(mcu_link.NACK, {"seq": frame.seq, "code": error.code})
            return
        key = (frame.ftype, frame.seq, frame.payload)
        handler = self._handlers.get(frame.ftype)
        if key == self._last_accepted:
            self._reply(mcu_link.ACK, {"seq": frame.seq})  # a resend after our ACK was lost
        elif handler is None:
            self._reply(mcu_link.NACK, {"seq": frame.seq, "code": "mcu.unknown_type"})
        else:
            self._accept(handler, message, key)

    def _accept(self, handler: Callable[[dict[str, Any], int], None], message: mcu_link.Message,
                key: tuple[int, int, bytes]) -> None:
        try:
            handler(message.body, self._clock())
        except (KeyError, TypeError, ValueError) as error:
            log.warning("supervisor sent a bad %s: %s", NAMES[message.ftype], error)
            self._reply(mcu_link.NACK, {"seq": message.seq, "code": "mcu.bad_value"})
            return
        self._last_accepted = key
        self._reply(mcu_link.ACK, {"seq": message.seq})

    def _on_reply(self, frame: mcu_link.Frame) -> None:
        try:
            body = mcu_link.decode_message(frame).body
        except ValueError:
            return  # a reply is never answered, so a bad one is dropped
        with self._state:
            request = self._pending
            if request is None or body.get("seq") != request.seq:
                return  # late: for a request already settled
            if frame.ftype == mcu_link.ACK:
                request.acked = True
            else:
                request.refused = str(body.get("code", "mcu.refused"))
            self._state.notify_all()

    def _on_answer(self, body: dict[str, Any], arrival_ns: int) -> None:
        req = _field(body, "req", int)
        with self._state:
            request = self._pending
            if request is not None and request.seq == req and request.answer is None:
                request.answer = body
                self._state.notify_all()

    def _event(self, event: SupervisorEvent) -> None:
        with self._state:
            if len(self._events) >= MAX_EVENTS:
                self._events.popleft()
                self._counters["events_dropped"] += 1
            self._events.append(event)
            self._state.notify_all()

    def _on_button(self, body: dict[str, Any], arrival_ns: int) -> None:
        action = _field(body, "action", str)
        if action not in ("press", "hold"):
            raise ValueError(f"unknown button action {action}")
        age_ms = body.get("age_ms", 0)
        self._event(ButtonEvent(
            button=_field(body, "button", str),
            long_press=action == "hold",
            mcu_ms=_field(body, "t_ms", int),
            mono_ns=arrival_ns - (age_ms if type(age_ms) is int else 0) * 1_000_000,
        ))

    def _on_battery(self, body: dict[str, Any], arrival_ns: int) -> None:
        if "req" in body:
            self._on_answer(body, arrival_ns)
        else:
            self._event(_battery_status(body))

    def _on_power_fail(self, body: dict[str, Any], arrival_ns: int) -> None:
        self._event(PowerFail(arrival_ns, _field(body, "mv", int), _field(body, "ms_left", int)))

    def _on_tamper(self, body: dict[str, Any], arrival_ns: int) -> None:
        self._event(Tamper(
            opened=_field(body, "opened", bool),
            mono_ns=arrival_ns,
            count=_field(body, "count", int),
            source=_field(body, "source", str),
        ))


def _battery_status(body: dict[str, Any]) -> BatteryStatus:
    return BatteryStatus(
        percent=_field(body, "percent", int),
        millivolts=_field(body, "mv", int),
        charging=_field(body, "charging", bool),
        external_power=_field(body, "external", bool),
    )


def _checked(make: Callable[[], Any]) -> Any:
    """An answer's value, or SupervisorError when the MCU's answer is malformed."""
    try:
        return make()
    except (KeyError, TypeError, ValueError) as error:
        raise SupervisorError("mcu.bad_answer", f"malformed answer from the supervisor MCU: {error}") from error
