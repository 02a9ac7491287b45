"""A simulated `machine` module for the supervisor MCU's code, on CPython and on MicroPython.

The simulator (`simulators.mcu`) and the MCU tests install this module as `machine` and build
the firmware on a `SimBoard`: its pins, ADC, UART, RTC and I2C bus. Time is the board's
`now_ms`, set by whoever drives the simulation; nothing here reads a clock. The classes keep the
`machine` names and signatures that `firmware/mcu/board.py` uses (rp2 port).

Runs under MicroPython too (tests/mcu runs the same scenarios on both), so: no typing at run
time, no dataclasses, no f-string `=`, and no dict order relied on.
"""

TYPE_CHECKING = False  # MicroPython has no typing module; mypy reads this name as True
if TYPE_CHECKING:
    from firmware.mcu.secure_element import SecureElement

ENODEV = 19
EIO = 5
HISTORY_MAX = 10_000  # output changes kept

_board = None


def use(board: "SimBoard") -> None:
    """Make `board` the one that peripherals constructed from now on belong to."""
    global _board
    _board = board


def _current() -> "SimBoard":
    if _board is None:
        raise RuntimeError("no SimBoard in use: call simulators.mcu_machine.use(board) first")
    return _board


# ------------------------------------------------------------------------------- calendar
# Written independently of firmware/mcu/rtc.py (month by month rather than by formula), so the
# simulated RTC checks the firmware's conversion instead of repeating it.

_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
RTC_RESET = (2021, 1, 1, 4, 0, 0, 0, 0)  # what the RP2040's RTC holds after power-up


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _month_days(year: int, month: int) -> int:
    return 29 if month == 2 and _leap(year) else _MONTH_DAYS[month - 1]


def seconds_from_tuple(dt: tuple) -> int:
    days = 0
    for year in range(1970, dt[0]):
        days += 366 if _leap(year) else 365
    for month in range(1, dt[1]):
        days += _month_days(dt[0], month)
    days += dt[2] - 1
    return days * 86400 + dt[4] * 3600 + dt[5] * 60 + dt[6]


def tuple_from_seconds(seconds: int) -> tuple:
    days, rest = divmod(seconds, 86400)
    weekday = (days + 3) % 7
    year = 1970
    while days >= (366 if _leap(year) else 365):
        days -= 366 if _leap(year) else 365
        year += 1
    month = 1
    while days >= _month_days(year, month):
        days -= _month_days(year, month)
        month += 1
    return (year, month, days + 1, weekday, rest // 3600, rest // 60 % 60, rest % 60, 0)


# ------------------------------------------------------------------------------- the board


class SimBoard:
    """Everything outside the MCU: input levels, output levels with their history, analog
    values, the UART's two directions, the RTC's count and the devices on the I2C bus."""

    def __init__(self) -> None:
        self.now_ms = 0
        self.inputs: dict = {}  # pin -> level driven from outside; absent: the pull decides
        self.outputs: dict = {}  # pin -> level driven by the MCU
        self.history: list = []  # (ms, pin, level) for every output change
        self.analog: dict = {}  # pin -> 16-bit ADC reading
        self.rx = bytearray()  # towards the MCU
        self.tx = bytearray()  # from the MCU
        self.rxbuf = 256
        self.rx_overflow = 0
        self.i2c_devices: dict = {}  # address -> device, such as Atecc608Emulator
        self.rtc_reset()

    def rtc_reset(self) -> None:
        """The RTC lost power: it restarts from its reset value."""
        self._rtc_seconds = seconds_from_tuple(RTC_RESET)
        self._rtc_set_ms = self.now_ms

    def rtc_seconds(self) -> int:
        return self._rtc_seconds + (self.now_ms - self._rtc_set_ms) // 1000

    def rtc_set_seconds(self, seconds: int) -> None:
        self._rtc_seconds = seconds
        self._rtc_set_ms = self.now_ms

    def feed_uart(self, data: bytes) -> None:
        """Bytes arriving at the MCU's RX pin; beyond the receive buffer they are lost, as on the chip."""
        room = self.rxbuf - len(self.rx)
        self.rx.extend(data[:room])
        self.rx_overflow += max(0, len(data) - room)

    def take_uart(self) -> bytes:
        """Bytes the MCU has sent since the last call."""
        data = bytes(self.tx)
        self.tx = bytearray()
        return data

    def level(self, pin: int) -> int:
        """An output's present level (0 before the MCU first drives it)."""
        return self.outputs.get(pin, 0)

    def _drive(self, pin: int, level: int) -> None:
        if self.outputs.get(pin) != level:
            self.outputs[pin] = level
            self.history.append((self.now_ms, pin, level))
            if len(self.history) > HISTORY_MAX:  # a long simulation blinks a lot
                del self.history[: HISTORY_MAX // 2]


# ------------------------------------------------------------------------------- machine API


class Pin:
    IN = 0
    OUT = 1
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, id: int, mode: int = -1, pull: int = -1, *, value: "int | None" = None) -> None:
        self.id = id
        self._board = _current()
        self._mode = mode
        self._pull = pull
        if value is not None:
            self.value(value)

    def value(self, x: "int | None" = None) -> "int | None":
        if x is not None:
            self._board._drive(self.id, 1 if x else 0)
            return None
        if self._mode == Pin.OUT:
            return self._board.level(self.id)
        if self.id in self._board.inputs:
            return self._board.inputs[self.id]
        return 1 if self._pull == Pin.PULL_UP else 0


class ADC:
    def __init__(self, pin: "Pin | int") -> None:
        self._board = _current()
        self._pin = pin if isinstance(pin, int) else pin.id

    def read_u16(self) -> int:
        return self._board.analog.get(self._pin, 0)


class UART:
    def __init__(self, id: int, baudrate: int = 115200, *, rxbuf: int = 256, **pins_and_timing: object) -> None:
        self._board = _current()
        self._board.rxbuf = rxbuf

    def any(self) -> int:
        return len(self._board.rx)

    def read(self, nbytes: int = -1) -> "bytes | None":
        rx = self._board.rx
        if not rx:
            return None
        count = len(rx) if nbytes < 0 else min(nbytes, len(rx))
        data = bytes(rx[:count])
        self._board.rx = rx[count:]
        return data

    def write(self, buf: bytes) -> int:
        self._board.tx.extend(buf)
        return len(buf)


class RTC:
    def __init__(self) -> None:
        self._board = _current()

    def datetime(self, datetimetuple: "tuple | None" = None) -> "tuple | None":
        if datetimetuple is None:
            return tuple_from_seconds(self._board.rtc_seconds())
        self._board.rtc_set_seconds(seconds_from_tuple(datetimetuple))
        return None


class I2C:
    def __init__(self, id: int, *, scl: object = None, sda: object = None, freq: int = 400_000) -> None:
        self._board = _current()

    def writeto(self, addr: int, buf: bytes, stop: bool = True) -> int:
        if addr == 0:
            # Addressing 0 holds SDA low long enough to wake a sleeping secure element; nothing answers.
            for device in self._board.i2c_devices.values():
                device.wake()
            raise OSError(EIO)
        self._device(addr).write(bytes(buf))
        return 1

    def readfrom(self, addr: int, nbytes: int, stop: bool = True) -> bytes:
        return self._device(addr).read(nbytes)

    def _device(self, addr: int) -> "Atecc608Emulator":
        device = self._board.i2c_devices.get(addr)
        if device is None:
            raise OSError(ENODEV)
        return device


# ------------------------------------------------------------------------------- secure element


def _reflect8(byte: int) -> int:
    out = 0
    for bit in range(8):
        if byte & (1 << bit):
            out |= 0x80 >> bit
    return out


def atecc_crc(data: bytes) -> bytes:
    """The ATECC CRC as a conventional MSB-first CRC-16/0x8005 over bit-reversed bytes; the same
    value as the datasheet's LSB-first loop in firmware/mcu/secure_element.py, computed differently."""
    crc = 0
    for byte in data:
        crc ^= _reflect8(byte) << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return bytes([crc & 0xFF, crc >> 8])


STATUS_OK = 0x00
STATUS_PARSE_ERROR = 0x03
STATUS_EXECUTION_ERROR = 0x0F
STATUS_AFTER_WAKE = 0x11
STATUS_CRC_ERROR = 0xFF


class Atecc608Emulator:
    """The part of an ATECC608's I2C behaviour the supervisor uses: wake, sleep, idle, and the
    Nonce (pass-through), GenKey (public key) and Sign (external digest) commands.

    `key` does the cryptography: any object with public_key() (X || Y) and sign_digest(digest)
    (r || s), such as simulators.mcu.SoftSecureElement. `busy_reads` makes each command's first
    reads go unacknowledged, as while the real chip computes.
    """

    def __init__(self, key: "SecureElement", slot: int = 0, busy_reads: int = 0) -> None:
        self.key = key
        self.slot = slot
        self.busy_reads = busy_reads
        self.awake = False
        self.commands: list = []  # opcodes received, for tests
        self._tempkey: bytes | None = None
        self._response = b""
        self._busy = 0

    def wake(self) -> None:
        if not self.awake:
            self.awake = True
            self._response = self._status(STATUS_AFTER_WAKE)

    def write(self, data: bytes) -> None:
        if not self.awake:
            raise OSError(ENODEV)  # asleep, the chip does not acknowledge its address
        word = data[0]
        if word == 0x01:  # sleep: TempKey is lost
            self.awake = False
            self._tempkey = None
        elif word == 0x02:  # idle: TempKey is kept
            self.awake = False
        elif word == 0x03:
            self._response = self._command(data[1:])
            self._busy = self.busy_reads

    def read(self, nbytes: int) -> bytes:
        if not self.awake or self._busy > 0:
            self._busy -= 1
            raise OSError(ENODEV)
        return (self._response + b"\xff" * nbytes)[:nbytes]

    def _command(self, packet: bytes) -> bytes:
        count = packet[0] if packet else 0
        if count < 7 or count != len(packet) or atecc_crc(packet[:-2]) != packet[-2:]:
            return self._status(STATUS_CRC_ERROR)
        opcode, param1, param2 = packet[1], packet[2], packet[3] | (packet[4] << 8)
        data = packet[5:-2]
        self.commands.append(opcode)
        if opcode == 0x16 and param1 == 0x03 and param2 == 0 and len(data) == 32:
            self._tempkey = data
            return self._status(STATUS_OK)
        if opcode == 0x40 and param1 == 0x00 and param2 == self.slot and not data:
            return self._packet(self.key.public_key())
        if opcode == 0x41 and param1 == 0x80 and param2 == self.slot and not data:
            if self._tempkey is None:
                return self._status(STATUS_EXECUTION_ERROR)
            digest, self._tempkey = self._tempkey, None
            return self._packet(self.key.sign_digest(digest))
        return self._status(STATUS_PARSE_ERROR)

    def _packet(self, data: bytes) -> bytes:
        body = bytes([len(data) + 3]) + data
        return body + atecc_crc(body)

    def _status(self, status: int) -> bytes:
        return self._packet(bytes([status]))
