printf '#!/bin/sh\necho hello\n' > hello && chmod 0755 hello
