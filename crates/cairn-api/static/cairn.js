// Progressive enhancement only: every page works without this file.
// After a network change, the page that still reaches the box confirms it, so the change is kept.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.querySelector("form[data-auto-confirm]");
  if (form) {
    form.querySelector("button").textContent = "Confirming…";
    form.submit();
  }
});
