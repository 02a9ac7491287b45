"""The secure element: one P-256 private key that signs and never leaves the chip.

On the board it is an ATECC608-class chip on I2C (`Atecc608` below). MicroPython has no ECDSA, so
the MCU never signs by itself: in simulation the chip is emulated on the simulated I2C bus
(`simulators.mcu_machine.Atecc608Emulator`) around a software key (`simulators.mcu.SoftSecureElement`,
CPython only, `cryptography`), and this driver talks to it exactly as it talks to the chip.

ATECC608 I2C protocol (Microchip datasheet, "I/O transmission"): wake the chip by holding SDA
low for 60 us (a write to address 0 at 100 kHz does), then write a command packet

    03 (command word address), count, opcode, param1, param2 (2 bytes, little-endian), data, CRC

where count covers itself through the CRC, and read a response packet: count, data, CRC. The
CRC is CRC-16 with polynomial 0x8005, bits taken least significant first, initial value 0, sent
least significant byte first, over count through data. A response of count 4 carries one
status byte (0 = success). While it executes a command the chip does not acknowledge its
address, so the response is polled for.
"""

TYPE_CHECKING = False  # MicroPython has no typing module; mypy reads this name as True
if TYPE_CHECKING:
    from collections.abc import Callable

    from machine import I2C

WAKE_OK = b"\x04\x11\x33\x43"  # the chip's answer after a wake-up: count 4, status 0x11, CRC

_CMD = 0x03
_SLEEP = 0x01
_NONCE = 0x16
_GENKEY = 0x40
_SIGN = 0x41
_NONCE_PASSTHROUGH = 0x03  # load the 32 bytes given into TempKey, unchanged
_GENKEY_PUBLIC = 0x00  # compute the public key of the private key in a slot
_SIGN_EXTERNAL = 0x80  # sign the digest held in TempKey
# Maximum execution times in ms (datasheet, "command execution times"); the poll waits this long.
_MAX_MS = {_NONCE: 7, _GENKEY: 115, _SIGN: 70}
_POLL_MS = 2


class SecureElementError(Exception):
    """The secure element is missing, refused a command or answered with a bad CRC."""


class SecureElement:
    """What the supervisor needs from a secure element: its public key and signatures."""

    def public_key(self) -> bytes:
        """The P-256 public key as X || Y, 64 bytes."""
        raise NotImplementedError

    def sign_digest(self, digest: bytes) -> bytes:
        """ECDSA P-256 signature of a 32-byte SHA-256 digest as r || s, 64 bytes."""
        raise NotImplementedError


def atecc_crc(data: bytes) -> bytes:
    """The ATECC's CRC of `data`, as the two bytes it sends (least significant first)."""
    crc = 0
    for byte in data:
        for bit in range(8):
            data_bit = (byte >> bit) & 1
            crc_bit = crc >> 15
            crc = (crc << 1) & 0xFFFF
            if data_bit != crc_bit:
                crc ^= 0x8005
    return bytes([crc & 0xFF, crc >> 8])


def command_packet(opcode: int, param1: int, param2: int, data: bytes) -> bytes:
    """The bytes written to the chip for one command, word address first."""
    body = bytes([7 + len(data), opcode, param1, param2 & 0xFF, param2 >> 8]) + data
    return bytes([_CMD]) + body + atecc_crc(body)


class Atecc608(SecureElement):
    """An ATECC608 on a `machine.I2C` bus, its key in `slot` (provisioned and locked at the factory)."""

    def __init__(self, i2c: "I2C", address: int, slot: int, sleep_ms: "Callable[[int], None]") -> None:
        self._i2c = i2c
        self._address = address
        self._slot = slot
        self._sleep_ms = sleep_ms

    def present(self) -> bool:
        """Whether a chip answers the wake-up at the address."""
        try:
            self._wake()
            answer = self._i2c.readfrom(self._address, 4)
            self._sleep()
        except OSError:
            return False
        return bytes(answer) == WAKE_OK

    def public_key(self) -> bytes:
        key = self._command(_GENKEY, _GENKEY_PUBLIC, self._slot, b"", 64)
        self._sleep()
        return key

    def sign_digest(self, digest: bytes) -> bytes:
        if len(digest) != 32:
            raise SecureElementError("a digest is 32 bytes")
        # TempKey survives only while the chip is awake: load it and sign in one wake period.
        self._command(_NONCE, _NONCE_PASSTHROUGH, 0, digest, 1)
        signature = self._command(_SIGN, _SIGN_EXTERNAL, self._slot, b"", 64)
        self._sleep()
        return signature

    def _wake(self) -> None:
        try:  # noqa: SIM105 (MicroPython has no contextlib)
            self._i2c.writeto(0, b"\x00")
        except OSError:
            pass  # nothing answers at address 0: the pulse is what counts
        self._sleep_ms(2)

    def _sleep(self) -> None:
        self._i2c.writeto(self._address, bytes([_SLEEP]))

    def _command(self, opcode: int, param1: int, param2: int, data: bytes, size: int) -> bytes:
        """Run one command; its response data (`size` bytes), or SecureElementError."""
        try:
            self._wake()
            self._i2c.writeto(self._address, command_packet(opcode, param1, param2, data))
            response = self._poll(size + 3, _MAX_MS[opcode])
        except OSError as error:
            raise SecureElementError("no answer from the secure element: " + str(error)) from error
        count = response[0]
        if count < 4 or count > len(response) or atecc_crc(response[: count - 2]) != response[count - 2 : count]:
            raise SecureElementError("bad response from the secure element")
        if count == 4 and size != 1:
            raise SecureElementError("secure element status " + hex(response[1]))
        if size == 1 and response[1] != 0:
            raise SecureElementError("secure element status " + hex(response[1]))
        return bytes(response[1 : count - 2])

    def _poll(self, size: int, max_ms: int) -> bytes:
        waited = 0
        while True:
            self._sleep_ms(_POLL_MS)
            waited += _POLL_MS
            try:
                return bytes(self._i2c.readfrom(self._address, size))
            except OSError:
                if waited > max_ms:
                    raise
