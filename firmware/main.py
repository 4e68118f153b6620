# Starts the sensor node. A crash is logged and the board resets: the outbox in flash
# keeps every unacknowledged event, so a reset loses nothing.
import sys
import time

import node

try:
    node.main()
except KeyboardInterrupt:
    raise
except Exception as e:
    try:
        with open("error.log", "a") as f:
            sys.print_exception(e, f)
    except OSError:
        pass
    sys.print_exception(e)
    time.sleep(5)
    import machine

    machine.reset()
