"""The host bridge: a UART and the framing that carries NoC flits over it."""

from .bridge import STATUS_REGISTERS, HostBridge, UartBridge
from .uart import DEFAULT_BAUD, UartRx, UartTx, divisor_for

__all__ = ["DEFAULT_BAUD", "STATUS_REGISTERS", "HostBridge", "UartBridge", "UartRx", "UartTx",
           "divisor_for"]
