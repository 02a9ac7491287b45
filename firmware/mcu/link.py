"""The MCU's end of the link to the main board (docs/protocol.md section 2).

Polled from the main loop, never blocking: `receive()` reads what the UART holds, acknowledges
or refuses each message and hands new ones to the application; `send()` queues a message and
`service()` sends the queue one frame at a time, each resent until acknowledged. One frame in
flight keeps MCU messages in order (a press is never overtaken by the release of another).
"""

from protocol import canonical, mcu_link

TYPE_CHECKING = False  # MicroPython has no typing module; mypy reads this name as True
if TYPE_CHECKING:
    from collections.abc import Callable

    from firmware.mcu.config import Config

# Requests answered by a separate frame. Answering has no side effect, so a repeated request is
# answered again: after a lost answer, or when a restarted main board's first request happens to
# repeat its predecessor's last one (same type, sequence number and body).
ANSWERED = (mcu_link.BATTERY_GET, mcu_link.RTC_GET, mcu_link.KEY_GET, mcu_link.SIGN_REQUEST)

# How a message is queued (Link.send):
NORMAL = 0  # in order, dropped after `tries` sends without an acknowledgement
LATEST = 1  # a state report: replaces a queued one of the same type, since only the newest matters
STICKY = 2  # an alarm (power fail, tamper): ahead of the others, and queued again after a give-up


class Link:
    def __init__(self, cfg: "Config", write: "Callable[[bytes], object]") -> None:
        self._write = write
        self._ack_ms = cfg.ack_ms
        self._tries = cfg.tries
        self._idle_ms = cfg.idle_ms
        self._queue_max = cfg.queue_max
        self._sticky_retry_ms = cfg.sticky_retry_ms
        self.decoder = mcu_link.FrameDecoder()
        self._seq = 0
        self._queue: list = []  # [type, body, kind, not before (ms)]
        self._flight: list | None = None  # [seq, frame, sends, resend at (ms), queue entry]
        self._last_accepted: tuple | None = None  # (type, seq, payload) of the last message acted on
        self._last_byte_ms = 0
        self.counters = {"sent": 0, "resent": 0, "acked": 0, "refused": 0, "gave_up": 0, "dropped": 0}

    def send(self, ftype: int, body: dict, kind: int = NORMAL) -> None:
        """Queue a message. A STICKY one is sent again every sticky_retry_ms until acknowledged,
        so that it reaches a main board that was off or restarting."""
        if kind == LATEST:
            for entry in self._queue:
                if entry[0] == ftype and entry[2] == LATEST:
                    entry[1] = body
                    return
        if len(self._queue) >= self._queue_max:
            self._drop_oldest()
        self._enqueue([ftype, body, kind, 0])

    def receive(self, data: bytes, now: int, handle: "Callable[[mcu_link.Message], str | None]") -> None:
        """Take bytes read from the UART. `handle(message)` acts on a message and returns None to
        accept it or an error code to refuse it."""
        if data:
            self._last_byte_ms = now
            frames = self.decoder.feed(data)
        elif self.decoder.buffered and now - self._last_byte_ms >= self._idle_ms:
            frames = self.decoder.idle()
        else:
            return
        for frame in frames:
            if frame.ftype == mcu_link.ACK or frame.ftype == mcu_link.NACK:
                self._on_reply(frame)
            else:
                self._on_message(frame, handle)

    def service(self, now: int) -> None:
        """Resend the frame in flight when its answer is late, or send the next queued one."""
        flight = self._flight
        if flight is not None:
            if now < flight[3]:
                return
            if flight[2] < self._tries:
                self._transmit(flight, now)
                self.counters["resent"] += 1
                return
            self._give_up(flight, now)
        self._start_next(now)

    def _start_next(self, now: int) -> None:
        for entry in self._queue:
            if entry[3] <= now:
                self._queue.remove(entry)
                seq = self._take_seq()
                frame = mcu_link.encode_message(entry[0], seq, entry[1])
                self._flight = [seq, frame, 0, 0, entry]
                self._transmit(self._flight, now)
                self.counters["sent"] += 1
                return

    def _transmit(self, flight: list, now: int) -> None:
        self._write(flight[1])
        flight[2] += 1
        flight[3] = now + self._ack_ms

    def _give_up(self, flight: list, now: int) -> None:
        self._flight = None
        self.counters["gave_up"] += 1
        entry = flight[4]
        if entry[2] == STICKY:
            entry[3] = now + self._sticky_retry_ms
            self._enqueue(entry)

    def _enqueue(self, entry: list) -> None:
        queue = self._queue
        if entry[2] != STICKY:
            queue.append(entry)
            return
        i = 0
        while i < len(queue) and queue[i][2] == STICKY:
            i += 1
        queue.insert(i, entry)

    def _drop_oldest(self) -> None:
        for entry in self._queue:
            if entry[2] != STICKY:
                self._queue.remove(entry)
                break
        else:
            self._queue.pop(0)
        self.counters["dropped"] += 1

    def _take_seq(self) -> int:
        seq = self._seq
        self._seq = (seq + 1) & 0xFF
        return seq

    def _reply(self, ftype: int, body: dict) -> None:
        self._write(mcu_link.encode_message(ftype, self._take_seq(), body))

    def _on_reply(self, frame: "mcu_link.Frame") -> None:
        try:
            seq = mcu_link.decode_message(frame).body["seq"]
        except (ValueError, KeyError):
            return  # an answer to an answer would loop: a bad ACK or NACK is dropped
        flight = self._flight
        if flight is None or seq != flight[0]:
            return  # late: an answer to a frame already resent and acknowledged
        self._flight = None
        self.counters["acked" if frame.ftype == mcu_link.ACK else "refused"] += 1

    def _on_message(self, frame: "mcu_link.Frame", handle: "Callable[[mcu_link.Message], str | None]") -> None:
        ftype, seq, payload = frame
        try:
            message = mcu_link.decode_message(frame)
        except (canonical.CanonicalError, mcu_link.LinkError) as error:
            self._reply(mcu_link.NACK, {"seq": seq, "code": error.code})
            return
        key = (ftype, seq, payload)
        if key == self._last_accepted and ftype not in ANSWERED:
            self._reply(mcu_link.ACK, {"seq": seq})
            return
        code = handle(message)
        if code is None:
            self._last_accepted = key
            self._reply(mcu_link.ACK, {"seq": seq})
        else:
            self._reply(mcu_link.NACK, {"seq": seq, "code": code})
