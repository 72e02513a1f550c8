# Types of the native extension module (rust/). Node's keyword arguments are
# exactly the library's configuration keys, so a type checker flags a
# misspelt one; tests/test_library.py checks them against CONFIG_KEYS.
from types import TracebackType
from typing import Any, Dict, Literal, Optional, Sequence, Tuple, Type, Union

_Topic = Union[str, bytes, bytearray, memoryview]
_Int = Union[int, str]
_Addrs = Union[str, Sequence[str]]

CONFIG_KEYS: Tuple[str, ...]

def library_version() -> str: ...

class Node:
    def __init__(
        self,
        *,
        node_name: Optional[str] = None,
        listen: Optional[str] = None,
        advertise: Optional[str] = None,
        seeds: Optional[_Addrs] = None,
        cluster: Optional[str] = None,
        secret: Optional[Union[str, bytes]] = None,
        flush_interval_ms: Optional[_Int] = None,
        flush_mode: Optional[Literal["adaptive", "fixed"]] = None,
        down_after_ms: Optional[_Int] = None,
        down_grace_ms: Optional[_Int] = None,
        max_topic_len: Optional[_Int] = None,
        max_peer_topics: Optional[_Int] = None,
        max_peer_topic_bytes: Optional[_Int] = None,
        gc_after_ms: Optional[_Int] = None,
        metrics_listen: Optional[str] = None,
        log_format: Optional[Literal["text", "json"]] = None,
    ) -> None: ...
    def track(self, topic: _Topic, conn: int) -> bool: ...
    def untrack(self, topic: _Topic, conn: int) -> bool: ...
    def untrack_all(self, conn: int) -> int: ...
    def add(self, topic: _Topic, delta: int) -> None: ...
    def count(self, topic: _Topic) -> int: ...
    def count_local(self, topic: _Topic) -> int: ...
    def count_info(self, topic: _Topic) -> Dict[str, int]: ...
    def total(self) -> int: ...
    @property
    def local_addr(self) -> str: ...
    def add_peer(self, addr: str) -> None: ...
    def stats(self) -> Dict[str, Any]: ...
    @property
    def closed(self) -> bool: ...
    def close(self) -> None: ...
    def __enter__(self) -> "Node": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...
