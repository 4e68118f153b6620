# Event body schemas: a copy of protocol/events.py's tables (a test keeps them equal).
# field -> (kind, required)
EVENT_TYPES = {
    'presence.enter': {'band': ('band', True), 'room': ('id', True), 'reader': ('id', True), 'rssi': ('int', False)},
    'presence.leave': {'band': ('band', True), 'room': ('id', True), 'reader': ('id', True), 'seen_ts': ('int', False)},
    'tap': {'band': ('band', True), 'reader': ('id', True), 'room': ('id', True), 'door': ('id', False)},
    'crossing': {'band': ('band', True), 'door': ('id', True), 'from_room': ('id', True), 'to_room': ('id', True)},
    'door': {'door': ('id', True), 'state': ('str', True)},
    'button': {'button': ('id', True), 'kind': ('str', True), 'room': ('id', False)},
    'band.status': {'band': ('band', True), 'reader': ('id', True), 'tamper': ('bool', False), 'battery_low': ('bool', False)},
    'local_alert': {'id': ('id', True), 'phase': ('phase', True), 'rule': ('id', True), 'room': ('id', True), 'bands': ('bands', False), 'detail': ('str', False)},
    'person_count': {'camera': ('id', True), 'room': ('id', True), 'count': ('int', True)},
    'behaviour': {'id': ('id', True), 'phase': ('phase', True), 'camera': ('id', True), 'room': ('id', True), 'cls': ('str', True), 'score_pct': ('int', True), 'track': ('int', False), 'persons': ('int', False), 'evidence': ('id', False)},
    'tamper': {'id': ('id', True), 'phase': ('phase', True), 'camera': ('id', True), 'room': ('id', True), 'kind': ('str', True), 'score_pct': ('int', False)},
    'camera': {'camera': ('id', True), 'room': ('id', True), 'live': ('bool', True), 'recording': ('bool', False), 'fps_x10': ('int', False)},
    'snapshot': {'camera': ('id', True), 'room': ('id', True), 'alert': ('str', True), 'jpeg_b64': ('str', True), 'masked': ('bool', True)},
    'segment': {'camera': ('id', True), 'room': ('id', True), 'file': ('str', True), 'start_ms': ('int', True), 'end_ms': ('int', True), 'frames': ('int', True), 'bytes': ('int', True), 'codec': ('str', True), 'sha256': ('sha256', True)},
    'evidence': {'id': ('id', True), 'camera': ('id', True), 'room': ('id', True), 'alert': ('id', True), 'start_ms': ('int', True), 'end_ms': ('int', True), 'frames': ('int', True), 'sha256': ('sha256', True), 'clear_sha256': ('sha256', True), 'masked': ('bool', True)},
    'fault': {'id': ('id', True), 'phase': ('phase', True), 'device': ('id', True), 'kind': ('str', True), 'count': ('int', False), 'detail': ('str', False)},
    'health': {'uptime_s': ('int', True), 'queue': ('int', True), 'obj': ('obj', False)},
    'ack': {'epoch': ('int', True), 'seqs': ('ints', True)},
    'roster': {'version': ('int', True), 'bands': ('obj', True)},
    'evidence_request': {'txn': ('str', True), 'evidence': ('id', True), 'user': ('id', True), 'clear': ('bool', False), 'offset': ('int', False), 'length': ('int', False)},
    'evidence_data': {'txn': ('str', True), 'evidence': ('id', True), 'ok': ('bool', True), 'error': ('str', False), 'sha256': ('sha256', False), 'total': ('int', False), 'offset': ('int', False), 'eof': ('bool', False), 'clear': ('bool', False), 'length': ('int', False), 'chunk_sha256': ('sha256', False)},
}
ENUMS = {
    ('door', 'state'): ('open', 'closed'),
    ('button', 'kind'): ('panic', 'call'),
    ('behaviour', 'cls'): ('fall', 'lying_still', 'agitated', 'fight'),
    ('tamper', 'kind'): ('covered', 'blurred', 'moved'),
}
PHASES = ('new', 'update', 'end')
