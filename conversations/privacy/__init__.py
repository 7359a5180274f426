"""Privacy and retention: chats that expire (the site's retention limit, temporary chats),
and a person's own copy of their data and the deletion of their account."""
